"""Memory budget of Sluice: worker RSS at idle and its growth over 100k jobs, Redis memory
per waiting job beyond its payload, and Redis memory per completed job (what
SLUICE_COMPLETED_RETENTION_S keeps; docs/engine.md, Memory).

    .venv/bin/python benchmarks/memory.py [--redis-url redis://127.0.0.1:6379/13] [--jobs 100000]
    .venv/bin/python benchmarks/memory.py --completed-only [--completed 1000]

Uses its own Redis database (FLUSHDB at start and end; never db 0). Prints a table and
one JSON line. ``--completed-only`` measures only the completed jobs (a few seconds, on a
temporary queue that it deletes), e.g. to check ``sluice.monitor.retention.COMPLETED_JOB_BYTES``
against another Redis version.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

from sluice import EnqueueRequest, Queue
from sluice.monitor.retention import COMPLETED_JOB_BYTES, measure_completed_job_bytes

QUEUE = "memory"
WORKER_CODE = """
import asyncio, sys, uvloop
import redis.asyncio as aioredis
from sluice import Queue, Worker

async def main():
    client = aioredis.Redis.from_url(sys.argv[1])
    queue = Queue("memory", redis=client, completed_retention_s=0)
    async def handler(job):
        return None
    await Worker(queue, handler, concurrency=10, handle_signals=True).run()

uvloop.run(main())
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def redis_per_waiting_job(
    queue: Queue, client: aioredis.Redis, jobs: int
) -> dict[str, float]:
    payload = {"text": "x" * 200, "conversation": 418}
    payload_bytes = len(json.dumps(payload, separators=(",", ":")))
    before = int((await client.info("memory"))["used_memory"])
    for begin in range(0, jobs, 1000):
        await queue.enqueue_many(
            [
                EnqueueRequest(key=f"c{i}", payload=payload, id=f"m{i}")
                for i in range(begin, begin + 1000)
            ]
        )
    after = int((await client.info("memory"))["used_memory"])
    per_job = (after - before) / jobs
    await queue.drain()
    return {
        "waiting_jobs": jobs,
        "payload_bytes": payload_bytes,
        "redis_bytes_per_waiting_job": per_job,
        "beyond_payload_bytes": per_job - payload_bytes,
    }


async def redis_per_completed_job(client: aioredis.Redis, jobs: int) -> dict[str, float]:
    """MEMORY USAGE of each completed job's hash + its share of the completed zset + its
    expires-dict entry, over ``jobs`` Chatwoot-shaped jobs run through a real worker."""
    measured = await measure_completed_job_bytes(client, jobs)
    return {
        "completed_jobs": measured.jobs,
        "completed_job_hash_bytes": measured.job_hash_bytes,
        "completed_zset_bytes_per_job": measured.zset_bytes,
        "completed_expires_entry_bytes": measured.expires_entry_bytes,
        "redis_bytes_per_completed_job": measured.per_job,
        "assumed_by_validate_bytes": COMPLETED_JOB_BYTES,
        "mb_per_job_per_s_per_day": measured.per_job * 86_400 / 1e6,
    }


async def wait_completed(queue: Queue, total: int, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while True:
        counts = await queue.counts()
        if counts["waiting"] + counts["active"] == 0:
            return
        if time.monotonic() > end:
            raise TimeoutError("jobs did not finish in time")
        await asyncio.sleep(0.2)


async def worker_rss(url: str, queue: Queue, jobs: int) -> dict[str, float]:
    # A benchmark driver: blocking Popen is fine here (it returns at once).
    proc = subprocess.Popen([sys.executable, "-c", WORKER_CODE, url])  # noqa: ASYNC220
    try:
        await asyncio.sleep(3.0)  # imports done, pool open, idle
        idle = rss_mb(proc.pid)
        for begin in range(0, 2000, 1000):
            await queue.enqueue_many(
                [EnqueueRequest(key=f"w{i}", payload={}) for i in range(begin, begin + 1000)]
            )
        await wait_completed(queue, 2000, 60)
        warm = rss_mb(proc.pid)
        started = time.monotonic()
        for begin in range(0, jobs, 5000):
            await queue.enqueue_many(
                [EnqueueRequest(key=f"x{i}", payload={}) for i in range(begin, begin + 5000)]
            )
            await wait_completed(queue, 5000, 60)
        elapsed = time.monotonic() - started
        after = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "worker_rss_idle_mb": idle,
        "worker_rss_warm_mb": warm,
        "worker_rss_after_mb": after,
        "worker_rss_growth_mb": after - warm,
        "jobs": jobs,
        "jobs_per_s": jobs / elapsed,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--waiting", type=int, default=20_000)
    parser.add_argument("--completed", type=int, default=1000)
    parser.add_argument("--completed-only", action="store_true")
    args = parser.parse_args()
    if args.redis_url.rstrip("/").endswith("/0"):
        parser.error("use a dedicated database, not db 0")
    client = aioredis.Redis.from_url(args.redis_url)
    await client.flushdb()
    queue = Queue(QUEUE, redis=client, completed_retention_s=0)
    try:
        result = await redis_per_completed_job(client, args.completed)
        if not args.completed_only:
            result.update(await redis_per_waiting_job(queue, client, args.waiting))
            result.update(await worker_rss(args.redis_url, queue, args.jobs))
    finally:
        await client.flushdb()
        await client.aclose()
    for name, value in result.items():
        print(f"{name:32} {value:12.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
