"""The load test's report as a table for people and as JSON for machines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table


def format_ms(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.2f} s"


def report_table(report: dict[str, Any]) -> Table:
    table = Table(title="load test report", header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    sla = report["sla_ms"]
    rows = [
        (
            "lines sent / replied / missing",
            f"{report['sent']} / {report['replied']} / {report['missing']}",
        ),
        ("duplicate replies", str(report["duplicate_replies"])),
        ("Chatwoot", f"{report['chatwoot']['chatwoot_version']} {report['chatwoot']['mode']}"),
        ("achieved rate", f"{report['achieved_rate']:.1f} msg/s"),
        (
            "SLA p50 / p95 / p99",
            f"{format_ms(sla['p50'])} / {format_ms(sla['p95'])} / {format_ms(sla['p99'])}",
        ),
        (
            "within 10 s / 30 s",
            " / ".join(f"{v:.2%}" if v is not None else "-" for v in report["compliance"].values()),
        ),
        ("worker utilization", f"{(report['worker_utilization'] or 0):.0%}"),
        ("Redis pool peak in use", str(report.get("pool_peak_in_use"))),
        (
            "process CPU / RSS peak",
            f"{report['process']['cpu_percent']:.0f} % / {report['process']['rss_peak_mb']:.0f} MB",
        ),
    ]
    for hop, value in report["hops_mean_ms"].items():
        rows.append((f"mean {hop}", "-" if value is None else f"{value:.0f} ms"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
