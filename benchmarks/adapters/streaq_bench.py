"""streaq adapter: Redis-streams worker (``concurrency`` = C), started with ``streaq run``.

Scenario A uses ``Worker.enqueue_many`` (one pipeline). streaq talks to Redis through coredis,
so the job body pushes with the worker's own coredis client.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _common import Adapter, BenchArgs, main, stamp, worker_config
from streaq import Worker

CONFIG = worker_config()


def make_worker(redis_url: str, concurrency: int) -> tuple[Worker[Any], Any]:
    """A streaq worker with the benchmark task registered on it."""
    bench_worker: Worker[Any] = Worker(redis_url=redis_url, concurrency=concurrency)

    @bench_worker.task(name="bench_job")
    async def bench_job(enqueue_ts: float) -> None:
        start_ts = time.time()
        await bench_worker.redis.rpush(CONFIG.results_key, [stamp(enqueue_ts, start_ts)])
        if CONFIG.sleep_s:
            await asyncio.sleep(CONFIG.sleep_s)

    return bench_worker, bench_job


# Loaded by ``streaq run streaq_bench:worker`` in the worker process.
worker, _bench_job = make_worker(CONFIG.redis_url, CONFIG.concurrency)


class StreaqProducer:
    def __init__(self, redis_url: str) -> None:
        self.worker, self.task = make_worker(redis_url, 1)
        self._stack = AsyncExitStack()

    async def open(self) -> None:
        await self._stack.enter_async_context(self.worker)

    async def close(self) -> None:
        await self._stack.aclose()

    async def enqueue_one(self, enqueue_ts: float) -> None:
        await self.task.enqueue(enqueue_ts)

    async def enqueue_many(self, stamps: Sequence[float]) -> str:
        await self.worker.enqueue_many([self.task.enqueue(ts) for ts in stamps])
        return "bulk"


def build(args: BenchArgs) -> Adapter:
    streaq_cli = str(Path(sys.executable).with_name("streaq"))
    return Adapter(
        lib="streaq",
        version=version("streaq"),
        producer=StreaqProducer(args.redis_url),
        worker_command=[streaq_cli, "run", "streaq_bench:worker"],
        notes="asyncio (anyio), concurrency=C; bulk = Worker.enqueue_many",
    )


if __name__ == "__main__":
    sys.exit(main(build))
