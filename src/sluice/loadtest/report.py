"""The load test's report as a table for people and as JSON for machines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from sluice.loadtest.config import LoadConfig
from sluice.loadtest.customers import Tally
from sluice.monitor.windows import WindowStats


def summarize(
    cfg: LoadConfig,
    tally: Tally,
    window: WindowStats,
    duplicates: int,
    chatwoot: dict[str, Any],
) -> dict[str, Any]:
    """The report's common part: what the customers saw (SLA from a line's creation in
    Chatwoot to the first reply after it), what the queue measured over the run, and what
    the simulator served and delivered."""
    return {
        "config": cfg.__dict__ | {"think_s": list(cfg.think_s)},
        "sent": tally.sent,
        "replied": tally.replied,
        "missing": tally.missing,
        "turns": tally.turns,
        "bursts": tally.bursts,
        "duplicate_replies": duplicates,
        "handoffs": handoffs(chatwoot),
        "achieved_rate": tally.sent / cfg.duration_s,
        "sla_ms": {
            "p50": tally.sla_ms.percentile(50),
            "p95": tally.sla_ms.percentile(95),
            "p99": tally.sla_ms.percentile(99),
            "max": max(tally.samples, default=None),
        },
        "compliance": {"within_10s": tally.within(10_000), "within_30s": tally.within(30_000)},
        "hops_mean_ms": window.breakdown(),
        "worker_utilization": window.utilization,
        "queue_wait_ms": {"p50": window.wait.percentile(50), "p99": window.wait.percentile(99)},
        "chatwoot": chatwoot,
        "chatwoot_sizing": dict(
            zip(("rate_limit_per_min", "sidekiq_threads"), cfg.chatwoot_sizing(), strict=True)
        ),
    }


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
        (
            "Chatwoot rack-attack / Sidekiq threads",
            "{rate_limit_per_min}/min / {sidekiq_threads}".format(**report["chatwoot_sizing"]),
        ),
        ("Chatwoot calls throttled (429)", str(report["chatwoot"].get("rate_limited", 0))),
        ("conversations handed to humans", str(handoffs(report["chatwoot"]))),
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
    ]
    webhooks = report["chatwoot"]["webhooks"]
    failed = webhooks["failed"]
    reasons = ", ".join(
        f"{n} {why}" for why, n in sorted(webhooks.get("failed_by_reason", {}).items())
    )
    rows.append(("webhook deliveries / failed", f"{webhooks['sent']} / {failed}"))
    if reasons:
        rows.append(("failed deliveries by cause", reasons))
    for name, label in (("queued_ms", "waited for a thread"), ("request_ms", "request")):
        spread = webhooks.get(name)
        if spread and spread.get("p50") is not None:
            rows.append(
                (
                    f"webhook {label} p50 / p99",
                    f"{spread['p50']:.0f} ms / {spread['p99']:.0f} ms",
                )
            )
    if "pool_peak_in_use" in report:
        rows.append(("Redis pool peak in use", str(report["pool_peak_in_use"])))
    if "process" in report:
        process = report["process"]
        rows.append(
            (
                "process CPU / RSS peak",
                f"{process['cpu_percent']:.0f} % / {process['rss_peak_mb']:.0f} MB",
            )
        )
    lags = report.get("instrument_loop_lag_ms")
    if lags:
        probes = [("simulator", lags["simulator"])] + [
            (f"customers {i}", lag) for i, lag in enumerate(lags["customers"])
        ]
        lag_text = ", ".join(
            f"{name} {lag['p99']:.0f} / {lag['max']:.0f} / {lag['gc_max']:.0f}"
            for name, lag in probes
            if lag and lag.get("p99") is not None
        )
        rows.append(("event-loop lag p99 / max / GC max (ms)", lag_text or "-"))
    for name, part in report.get("parts", {}).items():
        cpu = part["cpu_percent"]
        shown = "-" if cpu is None else f"{cpu:.0f} % of a core"
        rows.append((f"CPU {name} ({part['processes']} proc)", shown))
    for hop, value in report["hops_mean_ms"].items():
        rows.append((f"mean {hop}", "-" if value is None else f"{value:.0f} ms"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def handoffs(chatwoot: dict[str, Any]) -> int:
    """Conversations Sluice handed to humans (each is one status change it posted: the
    only status Sluice sets is ``open``, when a turn cannot be answered in time or at all).
    Their later lines get no bot reply, so a load test counts them as missing."""
    route = "POST /api/v1/accounts/{account_id}/conversations/{conversation_id}/toggle_status"
    by_status = chatwoot.get("requests", {}).get(route, {})
    return sum(n for status, n in by_status.items() if str(status).startswith("2"))


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
