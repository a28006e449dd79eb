"""`sluice up`: the whole system in one command, for a first run or a single host.

Redis (embedded unless REDIS_URL is set), the API with the Chatwoot webhook and the
dashboard, and workers: one worker runs in this process; for more, a child process runs
`sluice worker --processes N`, whose supervisor starts them. ``--demo`` swaps Chatwoot for
the simulator and adds customers (:mod:`sluice.cli.demo`).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from typing import Annotated, Any

import typer

from sluice.cli.common import (
    HandlerOpt,
    ProcessesOpt,
    err,
    load_settings_or_exit,
    redis_for,
    run_async,
    stop_event,
    traced,
    with_runtime,
)
from sluice.cli.demo import run_demo
from sluice.cli.serve import HostOpt, PortOpt, announce, api_address
from sluice.cli.worker import check_handler, open_handler
from sluice.control.controller import controller_from_settings
from sluice.service.runtime import Runtime
from sluice.service.wiring import DEFAULT_HANDLER, apply_fairness, build_worker
from sluice.worker.supervisor import child_env


def up(
    demo: Annotated[
        bool, typer.Option(help="Run a Chatwoot simulator with demo customers and show progress.")
    ] = False,
    processes: ProcessesOpt = 1,
    handler: HandlerOpt = DEFAULT_HANDLER,
    conversations: Annotated[int, typer.Option(min=1, help="Demo conversations.")] = 50,
    rate: Annotated[float, typer.Option(min=0.1, help="Demo messages per second.")] = 5.0,
    duration: Annotated[float, typer.Option(min=0, help="Demo seconds (0 = until Ctrl-C).")] = 0,
    host: HostOpt = None,
    port: PortOpt = None,
) -> None:
    """Run the whole system: Redis (embedded unless REDIS_URL is set), the API with the
    Chatwoot webhook, and workers. `--demo` adds a Chatwoot simulator and customers."""
    settings = load_settings_or_exit()
    address = api_address(settings, host, port)
    check_handler(handler)
    # The API and a worker in this process: one service (workers in child processes, when
    # --processes asks for them, trace as sluice-worker).
    with traced("sluice"), redis_for(settings) as (url, _):
        if demo:
            run_async(
                lambda: run_demo(settings, url, address, conversations, rate, duration, processes)
            )
            return
        supervisor = _spawn_supervisor(processes, handler, url) if processes > 1 else None

        async def system(runtime: Runtime) -> None:
            from sluice.api.factory import create_app
            from sluice.api.server import ApiServer

            stop = stop_event()
            api = ApiServer(create_app(settings, url), *address)
            base = await api.start()
            announce(base)
            worker = close = None
            task = None
            controller = None
            await apply_fairness(runtime)
            if supervisor is None:
                chosen = open_handler(runtime, handler)
                close = chosen.close
                worker = build_worker(runtime, chosen.handler, batch_size=chosen.batch_size)
                worker.handle_signals = False
                task = asyncio.create_task(worker.run())
                controller = controller_from_settings(runtime.settings, runtime.queue)
                if controller is not None:
                    controller.start()
            err.print("running; Ctrl-C to stop")
            await stop.wait()
            if controller is not None:
                await controller.stop()
            if worker is not None and task is not None and close is not None:
                await worker.stop()
                await task
                await close()
            await api.stop()

        try:
            with_runtime(settings, url, system)
        finally:
            if supervisor is not None:
                supervisor.send_signal(signal.SIGTERM)
                supervisor.wait(timeout=settings.shutdown_grace_s + 10)


def _spawn_supervisor(processes: int, handler: str, url: str) -> Any:
    """`sluice worker --processes N` in a child process (it supervises the workers)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sluice",
            "worker",
            "--processes",
            str(processes),
            "--handler",
            handler,
        ],
        env=child_env(url),
    )
