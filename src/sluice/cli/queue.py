"""Operating a running queue: `sluice status`, `pause`, `resume`, `drain` and `partitions`.

These act on the Redis of a Sluice that is already running (REDIS_URL is required), from
any machine that reaches it; pause, resume and drain change what every worker does,
wherever it runs.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from sluice.cli.common import console, load_settings_or_exit, require_redis_url, with_runtime
from sluice.queue import layout as layouts
from sluice.queue.layout import Layout, ResizeInProgressError
from sluice.queue.partitioned import PartitionedQueue
from sluice.service.runtime import Runtime
from sluice.worker import registry


def status_table(
    counts: dict[str, Any],
    workers: list[dict[str, Any]],
    rate: float | None,
    pool: dict[str, Any] | None = None,
) -> Table:
    """The queue at a glance (`sluice status`, and live in the demo)."""
    table = Table(title="Sluice", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in ("waiting", "active", "delayed", "completed", "dead", "ready_lanes"):
        table.add_row(name, str(counts[name]))
    table.add_row("paused", "yes" if counts["paused"] else "no")
    table.add_row("oldest waiting", f"{counts['oldest_waiting_age_ms'] / 1000:.1f} s")
    if rate is not None:
        table.add_row("completed / s", f"{rate:.1f}")
    slots = sum(w["slots"] for w in workers)
    busy = sum(w["utilization"] * w["slots"] for w in workers)
    table.add_row("workers / slots", f"{len(workers)} / {slots}")
    table.add_row("utilization", f"{busy / slots:.0%}" if slots else "-")
    if pool:
        table.add_row("pool in use / opened", f"{pool.get('in_use')} / {pool.get('opened')}")
    return table


def partition_table(parts: list[dict[str, Any]]) -> Table:
    """Depth per partition of a partitioned queue (docs/partitions.md)."""
    table = Table(title="Partitions", header_style="bold")
    for col in ("partition", "waiting", "active", "delayed", "dead", "ready lanes"):
        table.add_column(col, justify="right")
    for p, c in enumerate(parts):
        table.add_row(
            str(p),
            *(str(c[k]) for k in ("waiting", "active", "delayed", "dead", "ready_lanes")),
        )
    return table


def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Counts, workers and utilization of the queue."""
    settings = load_settings_or_exit(quiet=True)
    require_redis_url(settings)

    async def read(
        runtime: Runtime,
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        counts = await runtime.queue.counts()
        parts = await runtime.queue.partition_counts()
        workers = await registry.live_workers(runtime.queue.redis, runtime.queue.keys)
        return counts, parts, workers

    counts, parts, workers = with_runtime(settings, str(settings.redis_url), read)
    if as_json:
        doc = {"queue": settings.queue, "counts": counts, "workers": workers}
        if len(parts) > 1:
            doc["partitions"] = parts
        console.print_json(json.dumps(doc))
        return
    console.print(status_table(counts, workers, None))
    if len(parts) > 1:
        console.print(partition_table(parts))
    if workers:
        table = Table(title="Workers", header_style="bold")
        for col in ("id", "slots", "busy", "utilization", "processed", "failed"):
            table.add_column(col)
        for w in workers:
            table.add_row(
                w["id"],
                str(w["slots"]),
                str(w["busy"]),
                f"{w['utilization']:.0%}",
                str(w["processed"]),
                str(w["failed"]),
            )
        console.print(table)


def pause() -> None:
    """Stop new job starts on every worker (running jobs finish)."""
    settings = load_settings_or_exit(quiet=True)
    require_redis_url(settings)
    changed = with_runtime(settings, str(settings.redis_url), lambda rt: rt.queue.pause())
    console.print("paused" if changed else "already paused")


def resume() -> None:
    """Let workers start jobs again."""
    settings = load_settings_or_exit(quiet=True)
    require_redis_url(settings)
    changed = with_runtime(settings, str(settings.redis_url), lambda rt: rt.queue.resume())
    console.print("resumed" if changed else "was not paused")


def drain(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove every waiting and delayed job (running jobs finish)."""
    settings = load_settings_or_exit(quiet=True)
    require_redis_url(settings)
    if not yes:
        waiting = with_runtime(settings, str(settings.redis_url), lambda rt: rt.queue.counts())
        total = waiting["waiting"] + waiting["delayed"]
        typer.confirm(f"Remove {total} waiting jobs from {settings.queue!r}?", abort=True)
    removed = with_runtime(settings, str(settings.redis_url), lambda rt: rt.queue.drain())
    console.print(f"removed {removed} jobs")


def partitions(
    count: Annotated[
        int | None, typer.Argument(min=1, help="Resize to this many partitions.")
    ] = None,
) -> None:
    """Show the queue's partition layout, or start a resize to COUNT partitions
    (docs/partitions.md): a conversation stays on its old partition until it has nothing
    there; workers end the resize once none is left away from its new one."""
    settings = load_settings_or_exit(quiet=True)
    require_redis_url(settings)

    async def act(runtime: Runtime) -> Layout | None:
        queue = runtime.queue
        if count is None and not isinstance(queue, PartitionedQueue):
            return await layouts.read(queue.redis, queue.keys)  # only look
        if not isinstance(queue, PartitionedQueue):
            # The layout-aware queue; with no layout recorded yet, this records COUNT (a
            # queue that held conversations starts as a resize from 1).
            queue = PartitionedQueue(
                settings.queue, redis=queue.redis, partitions=count or settings.partitions
            )
        layout = await queue.check_layout(refresh=True)
        if count is not None and count != layout.partitions:
            layout = await queue.resize(count)
        return layout

    try:
        layout = with_runtime(settings, str(settings.redis_url), act)
    except ResizeInProgressError as exc:
        console.print(f"refused: {exc}")
        raise typer.Exit(1) from None
    if layout is None:
        console.print("1 partition (no layout recorded)")
        return
    line = f"{layout.partitions} partitions (epoch {layout.epoch})"
    if layout.resizing:
        line += f"; resize from {layout.previous} in progress"
    console.print(line)
    # Where each partition's keys are: the hash tags the layout recorded (docs/partitions.md).
    tags = ", ".join(
        f"{p} {{{layout.tag(settings.queue, p)}}}" for p in range(max(1, layout.highest))
    )
    console.print(f"hash tags: {tags}", highlight=False, markup=False, soft_wrap=True)
