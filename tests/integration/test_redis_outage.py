"""Redis going away at run time: the worker backs off and resumes by itself."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from sluice import Job, Queue, Worker
from sluice.redis.embedded import find_server_binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A throwaway Redis-compatible server on a TCP port we can kill and restart."""

    def __init__(self) -> None:
        self.binary = find_server_binary()
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.PIPE,
        )

    def wait_ready(self) -> None:
        """Read the server's log until it says it accepts connections (an event, not a
        timer); Redis and Valkey both print this line."""
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if b"Ready to accept connections" in line:
                return
        raise AssertionError("server exited before it was ready")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


class SeenWarning(logging.Handler):
    def __init__(self, fragment: str) -> None:
        super().__init__(logging.WARNING)
        self.fragment = fragment
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.fragment in record.getMessage():
            self.seen.set()


async def test_worker_survives_a_redis_restart(server: Server) -> None:
    await asyncio.to_thread(server.wait_ready)
    client = aioredis.Redis.from_url(server.url)
    queue = Queue("outage", redis=client)
    handled: asyncio.Queue[str] = asyncio.Queue()

    async def handler(job: Job) -> None:
        await handled.put(job.payload["n"])

    watcher = SeenWarning("redis unavailable")
    logging.getLogger("sluice.worker").addHandler(watcher)
    worker = Worker(queue, handler, handle_signals=False, idle_poll_s=0.1)
    task = asyncio.create_task(worker.run())
    try:
        await queue.enqueue("a", {"n": "before"})
        assert await asyncio.wait_for(handled.get(), 10) == "before"
        server.kill()
        await asyncio.wait_for(watcher.seen.wait(), 10)  # the worker noticed the outage
        server.start()
        await asyncio.wait_for(asyncio.to_thread(server.wait_ready), 10)
        await queue.enqueue("b", {"n": "after"})
        assert await asyncio.wait_for(handled.get(), 15) == "after"
        assert not task.done()
    finally:
        logging.getLogger("sluice.worker").removeHandler(watcher)
        await worker.stop()
        await task
        await client.aclose()
