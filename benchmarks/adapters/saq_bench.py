"""saq adapter: asyncio worker (``concurrency`` = C), started with ``python -m saq``.

saq has no bulk-enqueue API (``Queue.batch`` only groups jobs for cancellation), so scenario A
enqueues in a loop. The worker blocks on Redis (BLMOVE), so it needs no poll delay.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from _common import Adapter, BenchArgs, main, stamp, worker_config
from saq import Queue

CONFIG = worker_config()


async def bench_job(ctx: dict[str, Any], *, enqueue_ts: float) -> None:
    start_ts = time.time()
    await ctx["worker"].queue.redis.rpush(CONFIG.results_key, stamp(enqueue_ts, start_ts))
    if CONFIG.sleep_s:
        await asyncio.sleep(CONFIG.sleep_s)


# Loaded by ``saq saq_bench.settings`` in the worker process.
settings = {
    "queue": Queue.from_url(CONFIG.redis_url),
    "functions": [bench_job],
    "concurrency": CONFIG.concurrency,
}


class SaqProducer:
    def __init__(self, redis_url: str) -> None:
        self.queue = Queue.from_url(redis_url)

    async def open(self) -> None:
        await self.queue.connect()

    async def close(self) -> None:
        await self.queue.disconnect()

    async def enqueue_one(self, enqueue_ts: float) -> None:
        await self.queue.enqueue("bench_job", enqueue_ts=enqueue_ts)

    async def enqueue_many(self, stamps: Sequence[float]) -> str:
        for enqueue_ts in stamps:
            await self.queue.enqueue("bench_job", enqueue_ts=enqueue_ts)
        return "loop"


def build(args: BenchArgs) -> Adapter:
    return Adapter(
        lib="saq",
        version=version("saq"),
        producer=SaqProducer(args.redis_url),
        worker_command=[sys.executable, "-m", "saq", "saq_bench.settings"],
        notes="asyncio, concurrency=C; no bulk enqueue (loop)",
    )


if __name__ == "__main__":
    sys.exit(main(build))
