"""rq adapter: ``rq worker-pool -n C`` (C worker processes; each forks a work horse per job).

rq runs one job at a time per worker process, so concurrency C means C processes. Scenario A
uses ``Queue.enqueue_many`` with ``Queue.prepare_data`` (one pipeline). Jobs sleep with
``time.sleep``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from _common import Adapter, BenchArgs, main, stamp, worker_config
from redis import Redis
from rq import Queue, get_current_job

CONFIG = worker_config()
QUEUE_NAME = "default"
JOB_FUNC = "rq_bench.bench_job"  # by name: the driver runs this file as __main__


def bench_job(enqueue_ts: float) -> None:
    start_ts = time.time()
    job = get_current_job()
    assert job is not None
    job.connection.rpush(CONFIG.results_key, stamp(enqueue_ts, start_ts))
    if CONFIG.sleep_s:
        time.sleep(CONFIG.sleep_s)


class RqProducer:
    def __init__(self, redis_url: str) -> None:
        self.redis = Redis.from_url(redis_url)
        self.queue = Queue(QUEUE_NAME, connection=self.redis)

    async def open(self) -> None:
        self.redis.ping()

    async def close(self) -> None:
        self.redis.close()

    async def enqueue_one(self, enqueue_ts: float) -> None:
        self.queue.enqueue(JOB_FUNC, enqueue_ts)

    async def enqueue_many(self, stamps: Sequence[float]) -> str:
        self.queue.enqueue_many([Queue.prepare_data(JOB_FUNC, (ts,)) for ts in stamps])
        return "bulk"


def build(args: BenchArgs) -> Adapter:
    rq_cli = str(Path(sys.executable).with_name("rq"))
    return Adapter(
        lib="rq",
        version=version("rq"),
        producer=RqProducer(args.redis_url),
        worker_command=[
            rq_cli,
            "worker-pool",
            "--url",
            args.redis_url,
            "--num-workers",
            str(args.concurrency),
            QUEUE_NAME,
        ],
        notes="worker-pool: C processes, fork per job (rq.Worker); bulk = Queue.enqueue_many",
    )


if __name__ == "__main__":
    sys.exit(main(build))
