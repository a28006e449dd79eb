"""Starting and stopping real worker processes from tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from sluice import EnqueueRequest, Queue

WORKER_PROC = Path(__file__).with_name("worker_proc.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def spawn_worker(url: str, queue: str, mode: str, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, str(WORKER_PROC), url, queue, mode, *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def wait_ready(client: aioredis.Redis, queue: str, count: int, within_s: float = 20) -> None:
    """Block until ``count`` worker processes have announced themselves."""
    for _ in range(count):
        got = await client.blpop([f"{queue}:ready"], timeout=within_s)
        assert got is not None, "worker process did not start in time"


def reap(proc: subprocess.Popen[bytes], timeout: float = 15) -> int:
    if proc.poll() is None:
        proc.kill()
    return proc.wait(timeout=timeout)


GUARD_S = 0.020  # the limiter's guard between a reservation and its handler's start


@dataclass
class Starts:
    """What the ``record`` workers of worker_proc.py pushed, one entry per job start."""

    handler: list[float] = field(default_factory=list)  # each process's clock
    reserved: list[float] = field(default_factory=list)  # the reservation's Redis time
    pids: set[str] = field(default_factory=set)
    job_ids: list[str] = field(default_factory=list)

    def late(self) -> int:
        """Handlers that began later than the guard after their reservation."""
        pairs = zip(self.handler, self.reserved, strict=True)
        return sum(1 for at, taken in pairs if at - taken > GUARD_S)


async def paused_with_jobs(queue: Queue, total: int) -> None:
    """``total`` jobs, one conversation each, held until every worker process is up."""
    await queue.pause()
    await queue.enqueue_many([EnqueueRequest(key=f"c{n}", payload={}) for n in range(total)])


async def record_starts_of_three(
    url: str, client: Any, queue: Queue, total: int, *worker_args: str
) -> Starts:
    """Start three ``record`` worker processes with ``worker_args`` on a queue left by
    :func:`paused_with_jobs`, resume once all three announced themselves, and collect every
    start; the processes are stopped (SIGTERM, exit 0) whatever happens."""
    name = queue.name
    procs = [spawn_worker(url, name, "record", *worker_args) for _ in range(3)]
    starts = Starts()
    try:
        await wait_ready(client, name, 3)
        await queue.resume()
        while len(starts.handler) < total:
            got = await client.blpop([f"{name}:starts"], timeout=20)
            assert got is not None, f"only {len(starts.handler)} of {total} jobs started"
            at, pid, job_id, reserved_ms = got[1].decode().split("|")
            starts.handler.append(float(at))
            starts.reserved.append(float(reserved_ms) / 1000)
            starts.pids.add(pid)
            starts.job_ids.append(job_id)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=15) == 0
        await client.delete(f"{name}:starts", f"{name}:ready")
    return starts


def busiest_second(times: list[float]) -> int:
    """The most events in any half-open window [t, t + 1 s)."""
    ordered = sorted(times)
    return max(sum(1 for t in ordered[i:] if t < start + 1.0) for i, start in enumerate(ordered))
