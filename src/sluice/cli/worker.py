"""`sluice worker`: run worker processes for the queue, and the pieces `sluice up` shares
with it (checking ``--handler`` early, opening the handler with a one-line error).

The default handler is the Chatwoot reply pipeline; ``--handler package.module:function``
runs any other coroutine function instead, which is how the engine serves other work.
"""

from __future__ import annotations

from typing import Any

import typer

from sluice.cli.common import (
    HandlerOpt,
    ProcessesOpt,
    err,
    load_settings_or_exit,
    redis_for,
    traced,
    with_runtime,
)
from sluice.errors import ConfigError
from sluice.service.wiring import (
    DEFAULT_HANDLER,
    Runtime,
    WorkerHandler,
    apply_fairness,
    build_worker,
    import_handler,
    worker_handler,
)
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
            await apply_fairness(runtime)
            service = _start_monitoring(runtime)
            chosen = open_handler(runtime, handler)
            try:
                await build_worker(runtime, chosen.handler, batch_size=chosen.batch_size).run()
            finally:
                await chosen.close()
                await service.stop()

        with traced("sluice-worker"):
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


def open_handler(runtime: Runtime, spec: str) -> WorkerHandler:
    """The worker's handler (:func:`sluice.service.wiring.worker_handler`); a configuration
    error exits 2 with its one-line message."""
    try:
        return worker_handler(runtime, spec)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


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
