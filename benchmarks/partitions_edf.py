"""How far earliest-deadline-first holds across partitions (docs/partitions.md).

    .venv/bin/python benchmarks/partitions_edf.py [--partitions 3] [--workers 3]
        [--concurrency 4] [--jobs 600] [--url redis://127.0.0.1:6379/0]

A backlog of one-message conversations with mixed priority classes (so deadlines interleave
across partitions) is served by ``--workers`` queue objects, each exchanging as a worker
does (acknowledge what it holds and reserve ``--concurrency`` more in one call; a
partitioned queue visits its partitions in a round robin). For every start it counts the
jobs still waiting with an earlier deadline (the start overtook them), and for every job the
later-deadline jobs that started before it. The same run on one partition is the baseline:
there a reservation is one atomic earliest-deadline pop, so nothing is overtaken.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import uuid
from typing import Any

import redis.asyncio as aioredis

from sluice import Completion, EnqueueRequest, Job, Queue

CLASSES = ("urgent", "high", "normal", "low")


async def serve(queue: Queue, concurrency: int, exchanges: list[list[Job]]) -> None:
    held: list[Job] = []
    while True:
        done = [Completion(j.id, j.token, {}) for j in held]
        _, got, _ = await queue.complete(done, reserve=concurrency, worker_id=str(id(queue)))
        held = got.jobs
        if not held:
            return
        exchanges.append(held)


async def run(
    url: str, partitions: int, workers: int, concurrency: int, jobs: int
) -> dict[str, Any]:
    client = aioredis.Redis.from_url(url)
    name = f"edf-{uuid.uuid4().hex[:8]}"
    rng = random.Random(7)
    try:
        queues = [Queue(name, redis=client, partitions=partitions) for _ in range(workers)]
        await queues[0].pause()
        reqs = [
            EnqueueRequest(key=f"c{n}", payload={}, priority=rng.choice(CLASSES))
            for n in range(jobs)
        ]
        await queues[0].enqueue_many(reqs)
        await queues[0].resume()
        exchanges: list[list[Job]] = []
        await asyncio.gather(*(serve(q, concurrency, exchanges) for q in queues))
    finally:
        keys = [k async for k in client.scan_iter(match=f"sluice:{{{name}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    # One exchange's jobs start together (in deadline order, as a worker starts them); the
    # exchanges in the order Redis served them (its clock: their first reservation).
    exchanges.sort(key=lambda jobs: min(j.hops["reserved"] for j in jobs))
    starts = [j for jobs in exchanges for j in sorted(jobs, key=lambda j: j.deadline_ms or 0)]
    deadlines = [float(j.deadline_ms or 0) for j in starts]
    overtook = []  # per start: waiting jobs with an earlier deadline
    gap_ms = []  # per start: its deadline minus the earliest waiting one
    suffered = [0] * len(starts)  # per job: later-deadline jobs started before it
    for i, d in enumerate(deadlines):
        later = deadlines[i + 1 :]
        earlier = [x for x in later if x < d]
        overtook.append(len(earlier))
        gap_ms.append(d - min(earlier) if earlier else 0.0)
        for k, x in enumerate(later):
            if x < d:
                suffered[i + 1 + k] += 1
    ordered = sorted(gap_ms)
    return {
        "partitions": partitions,
        "exchanges": len(exchanges),
        "starts": len(starts),
        "inverted_starts": sum(1 for n in overtook if n),
        "inversions": sum(overtook),
        "max_overtaken_by": max(suffered),
        "gap_p50_ms": ordered[len(ordered) // 2],
        "gap_p99_ms": ordered[int(len(ordered) * 0.99)],
        "gap_max_ms": ordered[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=600)
    args = parser.parse_args()
    for n in sorted({1, args.partitions}):
        result = asyncio.run(run(args.url, n, args.workers, args.concurrency, args.jobs))
        print(
            " ".join(
                f"{k}={v:.0f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
            )
        )


if __name__ == "__main__":
    main()
