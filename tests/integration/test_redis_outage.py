"""Redis going away at run time: the worker backs off and resumes by itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from sluice import Job, Queue, Worker

from ..servers import RedisServer


@pytest.fixture
def server() -> Iterator[RedisServer]:
    srv = RedisServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop("kill")


class SeenWarning(logging.Handler):
    def __init__(self, fragment: str) -> None:
        super().__init__(logging.WARNING)
        self.fragment = fragment
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.fragment in record.getMessage():
            self.seen.set()


async def test_worker_survives_a_redis_restart(server: RedisServer) -> None:
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
        server.stop("kill")
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
