"""`sluice validate`: check that a deployment can do its work, before customers find out.

Configuration, Redis, scripts, pool, a canary round trip, the rate limit, pause/resume and
the alert channels, each reported pass/warn/fail; exit 1 on any failure, so a deploy
script can stop there. The checks live in :mod:`sluice.service.validate`, except the
alert channels' dry run, which comes from the alerting
(:func:`sluice.alerts.service.check_channels`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from sluice.cli.common import console, load_settings_or_exit, redis_for, run_async
from sluice.settings.config import Settings


def validate(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Check configuration, Redis, scripts, pool, a canary round trip, the rate limit,
    pause/resume and alert channels; exit 1 on any failure."""
    from sluice.service import validate as checks

    settings = load_settings_or_exit(quiet=True)
    with redis_for(settings) as (url, _):
        results = run_async(lambda: checks.run(settings, url, _channel_checks(settings)))
    failed = any(c.outcome == "fail" for c in results)
    if as_json:
        console.print_json(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in results]}))
    else:
        table = Table(title="sluice validate", header_style="bold")
        table.add_column("")
        table.add_column("check")
        table.add_column("detail")
        marks = {"pass": "[green]✔[/green]", "warn": "[yellow]![/yellow]", "fail": "[red]✘[/red]"}
        for c in results:
            table.add_row(marks[c.outcome], c.name, c.detail)
        console.print(table)
        warned = sum(c.outcome == "warn" for c in results)
        if failed:
            console.print("[red]FAILED[/red]")
        elif warned:
            console.print(
                f"[yellow]passed with {warned} warning{'s' if warned > 1 else ''}[/yellow]"
            )
        else:
            console.print("[green]all checks passed[/green]")
    if failed:
        raise typer.Exit(1)


def _channel_checks(settings: Settings) -> Any:
    """Dry-run reachability of the configured alert channels."""
    from sluice.alerts.service import check_channels
    from sluice.settings.check import Check

    async def run() -> list[Check]:
        return [
            Check(
                f"alert channel {name}",
                "pass" if problem is None else "fail",
                problem or "reachable",
            )
            for name, problem in await check_channels()
        ]

    return run
