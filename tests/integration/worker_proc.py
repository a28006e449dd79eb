"""A worker process for tests that need real processes (SIGKILL, SIGTERM, rate limits).

Usage: python worker_proc.py REDIS_URL QUEUE MODE [--concurrency N] [--rate R] [--lease MS]
       [--partitions N] [--cluster]
Modes:
  record     push "<start time>|<pid>|<job id>" to <queue>:starts, then finish
  hang-first attempt 1 pushes "<pid>|<job id>" to <queue>:started and never returns;
             later attempts push "<pid>|<job id>|<attempt>" to <queue>:done
  slow       like record, then takes 300 ms (for graceful-shutdown tests)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from typing import Any

import redis.asyncio as aioredis

from sluice import Job, Queue, Worker


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("queue")
    parser.add_argument("mode", choices=["record", "hang-first", "slow"])
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rate", type=int, default=0)
    parser.add_argument("--lease", type=int, default=5000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--cluster", action="store_true", help="URL names a cluster node")
    args = parser.parse_args()
    client: Any = (
        aioredis.RedisCluster.from_url(args.url)
        if args.cluster
        else aioredis.Redis.from_url(args.url)
    )
    queue = Queue(args.queue, redis=client, partitions=args.partitions)
    pid = os.getpid()

    async def handler(job: Job) -> None:
        if args.mode in ("record", "slow"):
            await client.rpush(
                f"{args.queue}:starts", f"{time.time():.6f}|{pid}|{job.id}|{job.hops['reserved']}"
            )
            if args.mode == "slow":
                await asyncio.sleep(0.3)  # the work itself, not synchronization
        elif job.attempt == 1:
            await client.rpush(f"{args.queue}:started", f"{pid}|{job.id}")
            await asyncio.Event().wait()
        else:
            await client.rpush(f"{args.queue}:done", f"{pid}|{job.id}|{job.attempt}")

    worker = Worker(
        queue,
        handler,
        concurrency=args.concurrency,
        rate_limit=args.rate,
        lease_ms=args.lease,
        heartbeat_ms=min(1000, args.lease // 3),
    )
    await client.ping()  # connect now, so the first job does not pay for it
    await client.rpush(f"{args.queue}:ready", str(pid))
    await worker.run()
    await client.aclose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
