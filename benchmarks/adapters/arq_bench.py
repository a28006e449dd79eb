"""arq adapter: asyncio worker (``max_jobs`` = concurrency), started with ``python -m arq``.

arq has no bulk-enqueue API, so scenario A enqueues in a loop. Worker defaults are kept,
including ``poll_delay=0.5`` s (arq polls its sorted-set queue; it does not block on Redis).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from _common import Adapter, BenchArgs, main, stamp, worker_config
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

CONFIG = worker_config()


async def bench_job(ctx: dict[str, Any], enqueue_ts: float) -> None:
    start_ts = time.time()
    await ctx["redis"].rpush(CONFIG.results_key, stamp(enqueue_ts, start_ts))
    if CONFIG.sleep_s:
        await asyncio.sleep(CONFIG.sleep_s)


class WorkerSettings:
    """Loaded by ``arq arq_bench.WorkerSettings`` in the worker process."""

    functions = (bench_job,)
    redis_settings = RedisSettings.from_dsn(CONFIG.redis_url)
    max_jobs = CONFIG.concurrency


class ArqProducer:
    def __init__(self, redis_url: str) -> None:
        self._settings = RedisSettings.from_dsn(redis_url)
        self._pool: ArqRedis | None = None

    @property
    def pool(self) -> ArqRedis:
        assert self._pool is not None, "producer not opened"
        return self._pool

    async def open(self) -> None:
        self._pool = await create_pool(self._settings)

    async def close(self) -> None:
        await self.pool.aclose()

    async def enqueue_one(self, enqueue_ts: float) -> None:
        await self.pool.enqueue_job("bench_job", enqueue_ts)

    async def enqueue_many(self, stamps: Sequence[float]) -> str:
        for enqueue_ts in stamps:
            await self.pool.enqueue_job("bench_job", enqueue_ts)
        return "loop"


def build(args: BenchArgs) -> Adapter:
    return Adapter(
        lib="arq",
        version=version("arq"),
        producer=ArqProducer(args.redis_url),
        worker_command=[sys.executable, "-m", "arq", "arq_bench.WorkerSettings"],
        notes="asyncio, max_jobs=C; no bulk enqueue (loop); default poll_delay=0.5s",
    )


if __name__ == "__main__":
    sys.exit(main(build))
