"""Sluice as a small cluster of processes that a nemesis can break one part at a time.

- a private Redis (``appendonly yes``, ``appendfsync always``) in the run's directory,
  restartable on the same port: an acknowledged write survives a SIGKILL;
- the fake Chatwoot, in the test process;
- one ``sluice serve`` API and ``workers`` separate ``sluice worker`` processes, each
  reaching Redis through a fault proxy of its own, so a single worker can be partitioned,
  slowed or robbed of its replies while the others carry on.

Workers run with a 2 s lease and a 500 ms heartbeat (test_processes.WORKER_ENV), so a
pause of a few seconds outlives a lease, and with the SLA thresholds raised
(test_faults.ENV) so no turn is handed off for lack of budget: a fault must not turn into a
handoff that hides it. The global rate limit is off and each worker has 4 slots (12 for
the 30 conversations of a run), so that more lanes are ready than slots are free and workers
keep a prefetch buffer (jobs reserved but not started): a state whose leases can expire too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sluice.loadtest import LoadConfig
from sluice.testing import FaultProxy

from ...servers import RedisServer, free_port
from ..system import new_simulator, serve_simulator, spawn_announced, terminate
from ..test_processes import WORKER_ENV

CLUSTER_ENV = {**WORKER_ENV, "QUEUE_RATE_LIMIT": "0", "WORKER_CONCURRENCY": "4"}
API_READY = b"API listening on"
WORKER_READY = b" started: "


@dataclass(eq=False)
class Member:
    """One Sluice process and the proxy between it and Redis (``proc`` None while it is
    down)."""

    name: str
    proxy: FaultProxy
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """See the module docstring; an async context manager that starts and stops it all."""

    def __init__(
        self,
        directory: Path,
        queue: str,
        *,
        workers: int = 3,
        cfg: LoadConfig | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.queue = queue
        self.cfg = cfg or LoadConfig(broker_latency_ms=200)
        self.extra_env = {**CLUSTER_ENV, **(env or {})}
        redis_dir = directory / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(redis_dir, fsync="always")
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.sim = new_simulator(self.cfg)
        self.api = Member("api", self._proxy())
        self.workers = [Member(f"worker-{n}", self._proxy()) for n in range(workers)]
        self.env: dict[str, str] = {}
        self._spawned = 0

    def _proxy(self) -> FaultProxy:
        return FaultProxy("127.0.0.1", self.redis.port)

    @property
    def members(self) -> list[Member]:
        return [self.api, *self.workers]

    @property
    def redis_url(self) -> str:
        """The direct URL (no proxy): for the test's own reads."""
        return self.redis.url

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Cluster:
        try:
            self.redis.start()
            await asyncio.to_thread(self.redis.wait_ready)
            for member in self.members:
                await member.proxy.start()
            self.env = await serve_simulator(
                self.sim, self.cfg, self.queue, self.api_url, self.extra_env
            )
            await self.start_api()
            for worker in self.workers:
                await self.start_worker(worker)
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
        await self.heal()
        await terminate([m.proc for m in self.members])
        for member in self.members:
            await member.proxy.stop()
        await self.sim.aclose()
        await asyncio.to_thread(self.redis.stop, "kill")

    def _env_for(self, member: Member) -> dict[str, str]:
        return {**self.env, "REDIS_URL": f"redis://{member.proxy.url_host}/0"}

    async def _spawn(self, member: Member, marker: bytes, *args: str) -> float:
        self._spawned += 1
        path = self.directory / f"{member.name}-{self._spawned}.log"
        member.proc, took = await spawn_announced(self._env_for(member), path, marker, *args)
        member.paused = False
        return took

    async def start_api(self) -> float:
        """Start ``sluice serve`` on the cluster's fixed port; seconds until it listened."""
        port = str(self.api_port)
        return await self._spawn(
            self.api, API_READY, "serve", "--host", "127.0.0.1", "--port", port
        )

    async def start_worker(self, worker: Member) -> float:
        """Start one ``sluice worker`` process (no supervisor: a signal reaches the worker
        itself); seconds until it announced that it started."""
        return await self._spawn(worker, WORKER_READY, "worker")

    # --- faults ------------------------------------------------------------------------------

    async def kill(self, member: Member) -> None:
        """SIGKILL: no shutdown handler runs, leases are left to expire."""
        if member.proc is None:
            return
        member.proc.kill()
        await asyncio.to_thread(member.proc.wait)
        member.proc, member.paused = None, False

    def pause(self, member: Member) -> None:
        """SIGSTOP: the process freezes mid-whatever (a GC pause, a VM stall, a laptop lid);
        its leases run out while it still believes it holds them."""
        if member.alive() and not member.paused:
            os.kill(member.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            member.paused = True

    def resume(self, member: Member) -> None:
        if member.paused and member.alive():
            os.kill(member.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        member.paused = False

    async def crash_redis(self) -> None:
        """SIGKILL the Redis server (what it acknowledged is in its fsynced AOF)."""
        await asyncio.to_thread(self.redis.stop, "kill")

    async def start_redis(self) -> float:
        """Start Redis again on the same port; seconds until it loaded its AOF."""
        self.redis.start()
        return await asyncio.to_thread(self.redis.wait_ready)

    async def heal(self) -> None:
        """Undo every fault that may be in force: resume paused processes, reopen and
        unstall every proxy, remove latency and pending reply losses."""
        for member in self.members:
            self.resume(member)
            member.proxy.stall(False)
            member.proxy.set_latency(0)
            member.proxy.lose_replies(0)
            await member.proxy.refuse(False)

    async def ensure_running(self) -> list[str]:
        """Start whatever is down (Redis first, then the API and workers); returns what had
        to be started. The nemesis restarts what it kills, so anything here died on its
        own, which the run reports."""
        started = []
        if self.redis.proc is None or self.redis.proc.poll() is not None:
            await self.start_redis()
            started.append("redis")
        if not self.api.alive():
            await self.start_api()
            started.append(self.api.name)
        for worker in self.workers:
            if not worker.alive():
                await self.start_worker(worker)
                started.append(worker.name)
        return started
