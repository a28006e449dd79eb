"""Starting and stopping real worker processes from tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

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
