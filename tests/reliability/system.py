"""Sluice as real processes for the reliability scenarios that kill or starve them.

The fake Chatwoot runs in the test process; the API (``sluice serve``) and the worker
(``sluice worker``) are child processes with their own Redis pools, so a scenario can
SIGKILL one of them, restart it on the same port, or read its resident memory from /proc
without counting the simulator's own bookkeeping. The in-process harness
(:func:`sluice.loadtest.run_system_with_simulator`) stays the tool for everything else.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from sluice.loadtest import LoadConfig, system_env
from sluice.simulator import ChatwootSimulator, SimulatorConfig

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
    ) -> None:
        self.redis_url = redis_url
        self.queue = queue
        self.logs = logs
        self.cfg = cfg or LoadConfig(broker_latency_ms=50)
        self.extra_env = dict(env or {})
        self.worker_processes = worker_processes
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        token, secret = secrets.token_hex(16), secrets.token_hex(16)
        self.sim = ChatwootSimulator(
            SimulatorConfig(
                api_token=token,
                webhook_secret=secret,
                seed=self.cfg.seed,
                webhook_retry_delay_s=1.0,
            ),
            webhook_log_size=WEBHOOK_LOG_SIZE,
        )
        self._token, self._secret = token, secret
        self.env: dict[str, str] = {}
        self.api: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self._spawned = 0

    async def __aenter__(self) -> ProcessSystem:
        sim_url = await self.sim.serve()
        self.env = {
            **os.environ,
            **self.extra_env,
            **system_env(sim_url, self._token, self._secret, self.cfg, self.queue),
            "REDIS_URL": self.redis_url,
            "SLUICE_LOG_FORMAT": "json",
        }
        self.sim.config.webhook_url = f"{self.api_url}/webhooks/chatwoot"
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
        for proc in (self.worker, self.api):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (self.worker, self.api):
            if proc is not None:
                try:
                    await asyncio.to_thread(proc.wait, 60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    await asyncio.to_thread(proc.wait)
        await self.sim.aclose()

    async def _start(self, marker: bytes, *args: str) -> tuple[subprocess.Popen[bytes], float]:
        """Start ``sluice <args>`` and wait for the line in which it announces that it is
        ready (``marker``); its output is copied to a log file in ``self.logs`` by a thread,
        which also wakes this wait, on the announcement or when the process ends first.
        Returns the process and the seconds it took."""
        self._spawned += 1
        path = self.logs / f"{args[0]}-{self._spawned}.log"
        started = time.monotonic()
        proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; output read by a thread
            [sys.executable, "-m", "sluice", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        announced: list[bool] = []

        def copy_output() -> None:
            assert proc.stdout is not None
            with path.open("wb") as log:
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    if not announced and marker in line:
                        announced.append(True)
                        loop.call_soon_threadsafe(woken.set)
            loop.call_soon_threadsafe(woken.set)  # end of output: the process is gone

        threading.Thread(target=copy_output, name=f"log {path.name}", daemon=True).start()
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await woken.wait()
        except TimeoutError:
            proc.kill()
            raise RuntimeError(f"sluice {args[0]} did not announce itself; see {path}") from None
        if not announced:
            raise RuntimeError(f"sluice {args[0]} exited with {proc.wait()}; see {path}")
        return proc, time.monotonic() - started

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
