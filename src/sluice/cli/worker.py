"""`sluice worker`: run worker processes for the queue, and the pieces `sluice up` shares
with it (which handler, what closes it, how many jobs per reservation).

The default handler is the Chatwoot reply pipeline; ``--handler package.module:function``
runs any other coroutine function instead, which is how the engine serves other work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import typer

from sluice.cli.common import (
    HandlerOpt,
    ProcessesOpt,
    err,
    load_settings_or_exit,
    redis_for,
    with_runtime,
)
from sluice.service.wiring import DEFAULT_HANDLER, Runtime, build_worker, import_handler
from sluice.settings.config import ConfigError
from sluice.worker import Handler
from sluice.worker.supervisor import Supervisor, child_env


def worker(
    processes: ProcessesOpt = 1,
    handler: HandlerOpt = DEFAULT_HANDLER,
) -> None:
    """Run worker processes for the queue until SIGTERM / Ctrl-C (default handler: the
    Chatwoot reply pipeline)."""
    settings = load_settings_or_exit()
    check_handler(handler)
    with redis_for(settings) as (url, _):
        if processes > 1:
            raise typer.Exit(Supervisor(processes, ["--handler", handler], child_env(url)).run())

        async def work(runtime: Runtime) -> None:
            service = _start_monitoring(runtime)
            job_handler, close = open_handler(runtime, handler)
            try:
                await build_worker(
                    runtime, job_handler, batch_size=batch_size(runtime, handler)
                ).run()
            finally:
                await close()
                await service.stop()

        with_runtime(settings, url, work)


def check_handler(handler: str) -> None:
    """Exit 2 before anything starts when ``--handler`` cannot be imported."""
    if handler == DEFAULT_HANDLER:
        return
    try:
        import_handler(handler)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def open_handler(runtime: Runtime, spec: str) -> tuple[Handler, Callable[[], Awaitable[None]]]:
    """The job handler and what closes it: the reply pipeline, or an imported function."""
    if spec != DEFAULT_HANDLER:
        return import_handler(spec), _noop
    from sluice.service.wiring import build_pipeline

    try:
        pipeline, client = build_pipeline(runtime)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    return pipeline, client.aclose


async def _noop() -> None:
    return None


def batch_size(runtime: Runtime, handler: str) -> int:
    """Jobs per reservation: the reply pipeline answers a burst of a conversation's messages
    at once (up to SLUICE_BURST_MAX); any other handler takes one job at a time."""
    return runtime.settings.burst_max if handler == DEFAULT_HANDLER else 1


def _start_monitoring(runtime: Runtime) -> Any:
    """Every worker process is a candidate alert evaluator (one leads, by lease)."""
    from sluice.alerts.service import MonitoringService
    from sluice.monitor.snapshot import Monitor

    monitor = Monitor(
        runtime.queue,
        sla_objective=runtime.settings.sla_objective,
        rate_limit=runtime.settings.queue_rate_limit,
    )
    service = MonitoringService(monitor)
    service.start()
    return service
