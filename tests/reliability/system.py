"""Sluice as real processes for the reliability scenarios that kill or starve them.

The fake Chatwoot runs in the test process; the API (``sluice serve``) and the worker
(``sluice worker``) are child processes with their own Redis pools, so a scenario can
SIGKILL one of them, restart it on the same port, or read its resident memory from /proc
without counting the simulator's own bookkeeping. The in-process harness
(:func:`sluice.loadtest.run_system_with_simulator`) stays the tool for everything else.

Both take the fake Chatwoot's receiver from ``LoadConfig.mode`` (``ProcessSystem(mode=...)``
overrides it): an account webhook or the inbox's agent bot (docs/simulator.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from sluice.loadtest import LoadConfig, simulator_config, system_env, wired_env
from sluice.simulator import ChatwootSimulator, Mode

from ..servers import free_port

START_TIMEOUT_S = 30.0
# Every delivery is accounted for (test_faults.accepted_messages): enough for an overload
# run of tens of thousands of messages and their outgoing echoes.
WEBHOOK_LOG_SIZE = 1_000_000


class ProcessSystem:
    """Simulator here, API and one worker process there, wired through ``redis_url``."""

    def __init__(
        self,
        redis_url: str,
        queue: str,
        logs: Path,
        *,
        cfg: LoadConfig | None = None,
        env: Mapping[str, str] | None = None,
        worker_processes: int = 1,
        mode: Mode | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.queue = queue
        self.logs = logs
        self.cfg = cfg or LoadConfig(broker_latency_ms=50)
        if mode is not None:
            self.cfg = dataclasses.replace(self.cfg, mode=mode)
        self.extra_env = dict(env or {})
        self.worker_processes = worker_processes
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.sim = new_simulator(self.cfg)
        self.env: dict[str, str] = {}
        self.api: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self._spawned = 0

    async def __aenter__(self) -> ProcessSystem:
        self.env = await serve_simulator(
            self.sim, self.cfg, self.queue, self.api_url, self.extra_env
        )
        self.env["REDIS_URL"] = self.redis_url
        try:
            await self.start_api()
            await self.start_worker()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await terminate([self.worker, self.api])
        await self.sim.aclose()

    async def _start(self, marker: bytes, *args: str) -> tuple[subprocess.Popen[bytes], float]:
        self._spawned += 1
        path = self.logs / f"{args[0]}-{self._spawned}.log"
        return await spawn_announced(self.env, path, marker, *args)

    async def start_api(self) -> float:
        """Start ``sluice serve`` on the fixed port; seconds until it was listening."""
        port = str(self.api_port)
        self.api, took = await self._start(
            b"API listening on", "serve", "--host", "127.0.0.1", "--port", port
        )
        return took

    async def kill_api(self) -> None:
        """SIGKILL the API process: no shutdown handler runs, in-flight requests are cut."""
        assert self.api is not None
        self.api.kill()
        await asyncio.to_thread(self.api.wait)

    async def start_worker(self) -> None:
        """Start ``sluice worker`` and wait until it has logged that it started."""
        args = ["worker"]
        if self.worker_processes > 1:
            args += ["--processes", str(self.worker_processes)]
        self.worker, _ = await self._start(b" started: ", *args)

    async def kill_worker(self) -> None:
        """SIGKILL the worker process mid-job: its leases expire and other workers (or its
        successor) recover the jobs."""
        assert self.worker is not None
        self.worker.kill()
        await asyncio.to_thread(self.worker.wait)

    def alive(self) -> dict[str, bool]:
        return {
            "api": self.api is not None and self.api.poll() is None,
            "worker": self.worker is not None and self.worker.poll() is None,
        }


def new_simulator(cfg: LoadConfig) -> ChatwootSimulator:
    """The fake Chatwoot of a process scenario: ``cfg``'s version and receiver (``mode``),
    fresh credentials, agent-bot retries 1 s apart (Chatwoot's 3 s, shortened), a webhook
    log big enough to account for every delivery. Its webhook URL is set by
    :func:`serve_simulator`."""
    return ChatwootSimulator(
        simulator_config(
            cfg, api_token=secrets.token_hex(16), webhook_secret=secrets.token_hex(16)
        ),
        webhook_log_size=WEBHOOK_LOG_SIZE,
    )


async def serve_simulator(
    sim: ChatwootSimulator,
    cfg: LoadConfig,
    queue: str,
    api_url: str,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Start serving ``sim``, point its webhooks at the API at ``api_url``, and return the
    environment for Sluice's child processes (everything but ``REDIS_URL``): this one's,
    ``extra_env``, then the wiring to the simulator and ``queue`` (in agent-bot mode with a
    user token, replies go out as the simulator's agent bot)."""
    sim_url = await sim.serve()
    sim.config.webhook_url = f"{api_url}/webhooks/chatwoot"
    token, secret = sim.config.api_token, sim.config.webhook_secret
    assert secret is not None  # new_simulator always signs
    wiring = system_env(sim_url, token, secret, cfg, queue, agent_bot_id=sim.config.bot_id)
    return {**wired_env(os.environ, extra_env, wiring), "SLUICE_LOG_FORMAT": "json"}


async def spawn_announced(
    env: Mapping[str, str], log_path: Path, marker: bytes, *args: str
) -> tuple[subprocess.Popen[bytes], float]:
    """Start ``sluice <args>`` and wait for the line in which it announces that it is ready
    (``marker``); its output is copied to ``log_path`` by a thread, which also wakes this
    wait, on the announcement or when the process ends first. Returns the process and the
    seconds it took."""
    started = time.monotonic()
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; output read by a thread
        [sys.executable, "-m", "sluice", *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    announced: list[bool] = []

    def copy_output() -> None:
        assert proc.stdout is not None
        with log_path.open("wb") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if not announced and marker in line:
                    announced.append(True)
                    loop.call_soon_threadsafe(woken.set)
        loop.call_soon_threadsafe(woken.set)  # end of output: the process is gone

    threading.Thread(target=copy_output, name=f"log {log_path.name}", daemon=True).start()
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            await woken.wait()
    except TimeoutError:
        proc.kill()
        raise RuntimeError(f"sluice {args[0]} did not announce itself; see {log_path}") from None
    if not announced:
        raise RuntimeError(f"sluice {args[0]} exited with {proc.wait()}; see {log_path}")
    return proc, time.monotonic() - started


async def terminate(procs: Iterable[subprocess.Popen[bytes] | None], grace_s: float = 60) -> None:
    """SIGTERM every live process (each shuts down gracefully, in parallel), then wait for
    each; one still running after ``grace_s`` is SIGKILLed."""
    live = [proc for proc in procs if proc is not None]
    for proc in live:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in live:
        try:
            await asyncio.to_thread(proc.wait, grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
