"""Sluice adapter: the same CLI and JSON contract as every peer adapter (see _common.py).

Run with the project's own venv. Each job is its own conversation unless
SLUICE_BENCH_CONVERSATIONS is set (then jobs are spread round-robin over that many
conversations, so lanes serialise them). The worker is Sluice's Worker with the default
monitoring (event stream, per-second counters, registry) on, uvloop as `sluice worker` uses,
and no rate limit (none of the peers has one either).

Tracing follows the standard OTEL_* variables as `sluice worker` does (docs/tracing.md): with
OTEL_EXPORTER_OTLP_ENDPOINT set (run_peers.py's ``sluice-otel`` sets it to a sink that
discards what it gets), the producer and the worker make and export their spans, and the
library is reported as ``sluice-otel``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from importlib.metadata import version

import redis.asyncio as aioredis
from _common import Adapter, BenchArgs, main, stamp, worker_config

from sluice import EnqueueRequest, Job, Queue, Worker, tracing

QUEUE = "bench"
CONVERSATIONS = int(os.environ.get("SLUICE_BENCH_CONVERSATIONS", "0"))
MONITORING = os.environ.get("SLUICE_BENCH_MONITORING", "1") != "0"
BULK_CHUNK = 1000


def conversation(index: int) -> str:
    return f"c{index % CONVERSATIONS}" if CONVERSATIONS else f"c{index}"


class SluiceProducer:
    def __init__(self, redis_url: str) -> None:
        self._url = redis_url
        self._queue: Queue | None = None
        self._count = 0

    @property
    def queue(self) -> Queue:
        assert self._queue is not None, "producer not opened"
        return self._queue

    async def open(self) -> None:
        tracing.configure_tracing("sluice-bench-producer")
        self._queue = Queue(QUEUE, url=self._url)

    async def close(self) -> None:
        await self.queue.close()
        tracing.shutdown_tracing()

    async def enqueue_one(self, enqueue_ts: float) -> None:
        await self.queue.enqueue(conversation(self._count), {"ts": enqueue_ts})
        self._count += 1

    async def enqueue_many(self, stamps: Sequence[float]) -> str:
        for begin in range(0, len(stamps), BULK_CHUNK):
            chunk = stamps[begin : begin + BULK_CHUNK]
            await self.queue.enqueue_many(
                [
                    EnqueueRequest(key=conversation(self._count + i), payload={"ts": ts})
                    for i, ts in enumerate(chunk)
                ]
            )
            self._count += len(chunk)
        return "bulk"


async def run_worker() -> None:
    tracing.configure_tracing("sluice-bench-worker")
    try:
        await _work()
    finally:
        tracing.shutdown_tracing()  # the spans still buffered go out (after the measurement)


async def _work() -> None:
    config = worker_config()
    client = aioredis.Redis.from_url(config.redis_url)
    queue = Queue(QUEUE, redis=client, monitoring=MONITORING)

    async def handler(job: Job) -> None:
        start_ts = time.time()
        await client.rpush(config.results_key, stamp(job.payload["ts"], start_ts))
        if config.sleep_s:
            await asyncio.sleep(config.sleep_s)

    prefetch = os.environ.get("SLUICE_BENCH_PREFETCH")
    await Worker(
        queue,
        handler,
        concurrency=config.concurrency,
        prefetch=None if prefetch is None else int(prefetch),
    ).run()


def build(args: BenchArgs) -> Adapter:
    code = (
        "import sluice_bench, uvloop; uvloop.run(sluice_bench.run_worker())"
        if os.environ.get("SLUICE_BENCH_LOOP", "uvloop") == "uvloop"
        else "import asyncio, sluice_bench; asyncio.run(sluice_bench.run_worker())"
    )
    shape = f"{CONVERSATIONS} conversations" if CONVERSATIONS else "one conversation per job"
    if not MONITORING:
        shape += ", monitoring off"
    traced = bool(tracing.exporters_wanted())
    if traced:
        shape += ", tracing on (OTLP/HTTP, batch processor)"
    return Adapter(
        lib="sluice"
        + (f"-{CONVERSATIONS}conv" if CONVERSATIONS else "")
        + ("" if MONITORING else "-nomon")
        + ("-otel" if traced else ""),
        version=version("sluice"),
        producer=SluiceProducer(args.redis_url),
        worker_command=[sys.executable, "-c", code],
        notes=f"asyncio+uvloop, {args.concurrency} slots, {shape}; pipelined bulk enqueue",
    )


if __name__ == "__main__":
    sys.exit(main(build))
