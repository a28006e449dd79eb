"""`sluice serve` in a process of its own, for tests that need the real server: the
schemathesis runs (and their memory and timing checks) talk to it over loopback HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from ..servers import free_port
from .conftest import TOKEN

SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass
class Server:
    url: str
    pid: int


@contextmanager
def serve(redis_url: str, queue_name: str, **env: str) -> Iterator[Server]:
    """`sluice serve` in its own process; Redis keys of the queue are removed afterwards."""
    port = free_port()
    environ = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "REDIS_URL": redis_url,
        "SLUICE_QUEUE": queue_name,
        "SLUICE_ADMIN_TOKEN": TOKEN,
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice", "serve", "--port", str(port)],
        env=environ,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the server's own announcement is the event we wait for
            if "API listening on" in line:
                break
        else:
            raise AssertionError("sluice serve did not start")
        yield Server(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"sluice:{{{queue_name}}}:*"))
        if keys:
            client.delete(*keys)
        client.close()
