"""`sluice dlq`: the dead letters of a running queue, jobs that failed for good.

An operator looks at them (``list``), requeues the ones worth another try once the cause
is fixed (``retry``), and deletes the rest (``purge``). Like the other operating commands
they act on REDIS_URL.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from sluice.cli.common import console, load_settings_or_exit, require_redis_url, with_runtime
from sluice.cli.help import SluiceCommand, SluiceGroup
from sluice.service.runtime import Runtime

group = typer.Typer(cls=SluiceGroup, help="Dead letters: list, retry, purge.", no_args_is_help=True)


@group.command("list", cls=SluiceCommand)
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Dead-lettered jobs with their last error."""
    settings = load_settings_or_exit(quiet=True)
    require_redis_url(settings)
    records = with_runtime(
        settings, str(settings.redis_url), lambda rt: rt.queue.dead_letters(limit)
    )
    if as_json:
        console.print_json(json.dumps([r.as_dict() for r in records]))
        return
    if not records:
        console.print(f"no dead letters in {settings.queue!r}")
        return
    table = Table(title=f"Dead letters of {settings.queue!r}", header_style="bold")
    for col in ("job", "conversation", "attempts", "error"):
        table.add_column(col)
    for r in records:
        table.add_row(r.id, r.key, str(r.attempt), r.error or "")
    console.print(table)


@group.command("retry", cls=SluiceCommand)
def dlq_retry(job_ids: Annotated[list[str], typer.Argument(help="Job ids to requeue.")]) -> None:
    """Requeue dead letters with fresh attempts."""
    settings = load_settings_or_exit(quiet=True)
    require_redis_url(settings)

    async def retry(rt: Runtime) -> list[bool]:
        return [await rt.queue.retry_dead(job_id) for job_id in job_ids]

    results = with_runtime(settings, str(settings.redis_url), retry)
    for job_id, ok in zip(job_ids, results, strict=True):
        console.print(f"{job_id}: {'requeued' if ok else 'not a dead letter'}")
    if not all(results):
        raise typer.Exit(1)


@group.command("purge", cls=SluiceCommand)
def dlq_purge(
    job_ids: Annotated[list[str] | None, typer.Argument(help="Ids (none = all).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete dead letters for good."""
    settings = load_settings_or_exit(quiet=True)
    require_redis_url(settings)
    if not job_ids and not yes:
        typer.confirm(f"Delete ALL dead letters of {settings.queue!r}?", abort=True)
    purged = with_runtime(
        settings, str(settings.redis_url), lambda rt: rt.queue.purge_dead(job_ids or None)
    )
    console.print(f"purged {purged} dead letters")
