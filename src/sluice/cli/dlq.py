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
from sluice.settings.config import Settings

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
def dlq_retry(
    job_ids: Annotated[list[str] | None, typer.Argument(help="Job ids to requeue.")] = None,
    error: Annotated[
        str | None, typer.Option(help="Only those whose last error contains this text.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only those that died since: 30m, 2h, 1d ago or ISO 8601.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only those that died until: 30m, 2h, 1d ago or ISO 8601.")
    ] = None,
    conversation: Annotated[
        str | None, typer.Option(help="Only this conversation (account:conversation).")
    ] = None,
    broker: Annotated[str | None, typer.Option(help="Only those the broker last handled.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count and list the matches; requeue nothing.")
    ] = False,
) -> None:
    """Requeue dead letters with fresh attempts: by id, or every one a filter selects."""
    from sluice.queue.dead_replay import DeadLetterFilter, parse_moment, replay

    filtered = any(v is not None for v in (error, since, until, conversation, broker))
    if job_ids and (filtered or every):
        raise typer.BadParameter("give job ids or a filter (or --all), not both")
    if not job_ids and not (filtered or every):
        raise typer.BadParameter(
            "give job ids, a filter (--error, --since, --until, --conversation, --broker) or --all"
        )
    settings = load_settings_or_exit(quiet=True)
    require_redis_url(settings)
    if job_ids:
        _retry_ids(settings, job_ids, dry_run)
        return
    try:
        flt = DeadLetterFilter(
            error=error,
            since_ms=parse_moment(since) if since else None,
            until_ms=parse_moment(until) if until else None,
            conversation=conversation,
            broker=broker,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    result = with_runtime(
        settings, str(settings.redis_url), lambda rt: replay(rt.queue, flt, dry_run=dry_run)
    )
    if dry_run:
        console.print(f"would requeue {len(result.matched)} dead letters (dry run)")
        for job_id in result.matched[:20]:
            console.print(f"  {job_id}")
        if len(result.matched) > 20:
            console.print(f"  ... and {len(result.matched) - 20} more")
        return
    console.print(
        f"requeued {len(result.requeued)} of {len(result.matched)} matching dead letters"
        + (f"; {len(result.skipped)} were no longer dead letters" if result.skipped else "")
    )


def _retry_ids(settings: Settings, job_ids: list[str], dry_run: bool) -> None:
    async def retry(rt: Runtime) -> list[bool]:
        if dry_run:
            records = [await rt.queue.get_job(job_id) for job_id in job_ids]
            return [r is not None and r.state == "dead" for r in records]
        return [await rt.queue.retry_dead(job_id) for job_id in job_ids]

    results = with_runtime(settings, str(settings.redis_url), retry)
    done = "would be requeued" if dry_run else "requeued"
    for job_id, ok in zip(job_ids, results, strict=True):
        console.print(f"{job_id}: {done if ok else 'not a dead letter'}")
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
