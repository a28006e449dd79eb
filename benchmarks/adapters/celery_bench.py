"""celery adapter: ``celery -A celery_bench worker --pool threads --concurrency C``.

Thread pool chosen over gevent: no monkey-patching and no extra dependency; jobs sleep with
``time.sleep``. Redis is the broker; no result backend. celery has no bulk-enqueue API
(``group`` publishes message by message), so scenario A enqueues in a loop with
``send_task`` on a producer-side app bound to the CLI's Redis URL.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from importlib.metadata import version

from _common import Adapter, BenchArgs, main, stamp, worker_config
from celery import Celery
from redis import Redis

CONFIG = worker_config()


def make_app(redis_url: str) -> Celery:
    app = Celery("celery_bench", broker=redis_url)
    app.conf.broker_connection_retry_on_startup = True
    app.conf.task_ignore_result = True
    return app


# Loaded by ``celery -A celery_bench worker`` in the worker process.
app = make_app(CONFIG.redis_url)
results = Redis.from_url(CONFIG.redis_url)


@app.task(name="bench_job")
def bench_job(enqueue_ts: float) -> None:
    start_ts = time.time()
    results.rpush(CONFIG.results_key, stamp(enqueue_ts, start_ts))
    if CONFIG.sleep_s:
        time.sleep(CONFIG.sleep_s)


class CeleryProducer:
    def __init__(self, redis_url: str) -> None:
        self.app = make_app(redis_url)

    async def open(self) -> None:
        self.app.connection_for_write().ensure_connection(max_retries=3)

    async def close(self) -> None:
        self.app.close()

    async def enqueue_one(self, enqueue_ts: float) -> None:
        self.app.send_task("bench_job", args=(enqueue_ts,))

    async def enqueue_many(self, stamps: Sequence[float]) -> str:
        for enqueue_ts in stamps:
            self.app.send_task("bench_job", args=(enqueue_ts,))
        return "loop"


def build(args: BenchArgs) -> Adapter:
    return Adapter(
        lib="celery",
        version=version("celery"),
        producer=CeleryProducer(args.redis_url),
        worker_command=[
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_bench",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(args.concurrency),
            "--loglevel",
            "INFO",
        ],
        notes="redis broker; --pool threads -c C; no bulk enqueue (loop, send_task)",
    )


if __name__ == "__main__":
    sys.exit(main(build))
