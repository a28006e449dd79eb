"""`sluice worker`: run worker processes for the queue, and the pieces `sluice up` shares
with it (checking ``--handler`` early, opening the handler with a one-line error).

The default handler is the Chatwoot reply pipeline; ``--handler package.module:function``
runs any other coroutine function instead, which is how the engine serves other work.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sluice.cli.common import (
    HandlerOpt,
    err,
    load_settings_or_exit,
    redis_for,
    traced,
    with_runtime,
)
from sluice.control.controller import controller_from_settings
from sluice.errors import ConfigError
from sluice.scaling.follow import AutoProcesses, desired_reader, parse_processes
from sluice.scaling.service import scaler_for
from sluice.scaling.settings import load_scaling_settings
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

AutoProcessesOpt = Annotated[
    str,
    typer.Option(
        help="Worker processes to run: a number, 'auto' (follow the scaling recommendation "
        "within SLUICE_SCALING_MIN/MAX_WORKERS) or 'auto:MIN..MAX'."
    ),
]


def worker(
    processes: AutoProcessesOpt = "1",
    handler: HandlerOpt = DEFAULT_HANDLER,
) -> None:
    """Run worker processes for the queue until SIGTERM / Ctrl-C (default handler: the
    Chatwoot reply pipeline)."""
    settings = load_settings_or_exit()
    wanted = _processes_or_exit(processes)
    check_handler(handler)
    with redis_for(settings) as (url, _):
        if isinstance(wanted, AutoProcesses):
            scaling = load_scaling_settings()
            supervisor = Supervisor(
                wanted.minimum,
                ["--handler", handler],
                child_env(url),
                target=desired_reader(settings, url),
                poll_s=scaling.poll_s,
                bounds=(wanted.minimum, wanted.maximum),
            )
            raise typer.Exit(supervisor.run())
        if wanted > 1:
            raise typer.Exit(Supervisor(wanted, ["--handler", handler], child_env(url)).run())

        async def work(runtime: Runtime) -> None:
            await apply_fairness(runtime)
            service = _start_monitoring(runtime)
            # Adaptive mode: every worker process is a candidate controller (one leads).
            controller = controller_from_settings(runtime.settings, runtime.queue)
            if controller is not None:
                controller.start()
            chosen = open_handler(runtime, handler)
            try:
                await build_worker(runtime, chosen.handler, batch_size=chosen.batch_size).run()
            finally:
                await chosen.close()
                if controller is not None:
                    await controller.stop()
                await service.stop()

        with traced("sluice-worker"):
            with_runtime(settings, url, work)


def _processes_or_exit(value: str) -> int | AutoProcesses:
    """``--processes`` parsed, or exit 2 with the accepted forms (or the missing switch)."""
    try:
        return parse_processes(value, load_scaling_settings())
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


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
    service = MonitoringService(monitor, scaler=scaler_for(runtime.queue, runtime.settings))
    service.start()
    return service
