"""taskiq adapter: ``RedisStreamBroker`` from taskiq-redis (the broker its README leads with).

Worker: ``python -m taskiq worker taskiq_bench:broker --workers 1 --max-async-tasks C``, i.e.
one worker process (under taskiq's supervisor) running up to C asyncio tasks. taskiq has no
bulk-enqueue API, so scenario A enqueues in a loop. No result backend is configured.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from importlib.metadata import version

from _common import Adapter, BenchArgs, main, stamp, worker_config
from redis.asyncio import Redis
from taskiq.kicker import AsyncKicker
from taskiq_redis import RedisStreamBroker

CONFIG = worker_config()

broker = RedisStreamBroker(url=CONFIG.redis_url)
results = Redis.from_url(CONFIG.redis_url)


@broker.task(task_name="bench_job")
async def bench_job(enqueue_ts: float) -> None:
    start_ts = time.time()
    await results.rpush(CONFIG.results_key, stamp(enqueue_ts, start_ts))
    if CONFIG.sleep_s:
        await asyncio.sleep(CONFIG.sleep_s)


class TaskiqProducer:
    """Kicks ``bench_job`` by name through a client-side broker bound to the CLI's URL."""

    def __init__(self, redis_url: str) -> None:
        self.broker = RedisStreamBroker(url=redis_url)
        self.kicker: AsyncKicker[[float], None] = AsyncKicker("bench_job", self.broker, {})

    async def open(self) -> None:
        await self.broker.startup()

    async def close(self) -> None:
        await self.broker.shutdown()

    async def enqueue_one(self, enqueue_ts: float) -> None:
        await self.kicker.kiq(enqueue_ts)

    async def enqueue_many(self, stamps: Sequence[float]) -> str:
        for enqueue_ts in stamps:
            await self.kicker.kiq(enqueue_ts)
        return "loop"


def build(args: BenchArgs) -> Adapter:
    return Adapter(
        lib="taskiq",
        version=f"{version('taskiq')}+taskiq-redis {version('taskiq-redis')}",
        producer=TaskiqProducer(args.redis_url),
        worker_command=[
            sys.executable,
            "-m",
            "taskiq",
            "worker",
            "taskiq_bench:broker",
            "--workers",
            "1",
            "--max-async-tasks",
            str(args.concurrency),
        ],
        notes="RedisStreamBroker; 1 worker process, --max-async-tasks C; no bulk enqueue (loop)",
    )


if __name__ == "__main__":
    sys.exit(main(build))
