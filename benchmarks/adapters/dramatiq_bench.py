"""dramatiq adapter: ``python -m dramatiq dramatiq_bench --processes 1 --threads C``.

One worker process with C worker threads; jobs sleep with ``time.sleep``. dramatiq has no
bulk-enqueue API (``group`` sends message by message), so scenario A enqueues in a loop.
The job body pushes through the broker's own redis-py client.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Any

import dramatiq
from _common import Adapter, BenchArgs, main, stamp, worker_config
from dramatiq.brokers.redis import RedisBroker

CONFIG = worker_config()


def make_actor(broker: RedisBroker) -> Any:
    """The benchmark actor, declared on ``broker``."""

    def bench_job(enqueue_ts: float) -> None:
        start_ts = time.time()
        broker.client.rpush(CONFIG.results_key, stamp(enqueue_ts, start_ts))
        if CONFIG.sleep_s:
            time.sleep(CONFIG.sleep_s)

    return dramatiq.actor(bench_job, actor_name="bench_job", broker=broker)


# Loaded by ``dramatiq dramatiq_bench`` in the worker process.
broker = RedisBroker(url=CONFIG.redis_url)
dramatiq.set_broker(broker)
bench_actor = make_actor(broker)


class DramatiqProducer:
    def __init__(self, redis_url: str) -> None:
        self.broker = RedisBroker(url=redis_url)
        self.send: Callable[[float], Any] = make_actor(self.broker).send

    async def open(self) -> None:
        self.broker.client.ping()

    async def close(self) -> None:
        self.broker.close()

    async def enqueue_one(self, enqueue_ts: float) -> None:
        self.send(enqueue_ts)

    async def enqueue_many(self, stamps: Sequence[float]) -> str:
        for enqueue_ts in stamps:
            self.send(enqueue_ts)
        return "loop"


def build(args: BenchArgs) -> Adapter:
    return Adapter(
        lib="dramatiq",
        version=version("dramatiq"),
        producer=DramatiqProducer(args.redis_url),
        worker_command=[
            sys.executable,
            "-m",
            "dramatiq",
            "dramatiq_bench",
            "--processes",
            "1",
            "--threads",
            str(args.concurrency),
        ],
        notes="RedisBroker; 1 process x C threads; no bulk enqueue (loop)",
    )


if __name__ == "__main__":
    sys.exit(main(build))
