"""Redis memory held by completed jobs, and what a retention costs.

A completed job keeps its hash (state, attempts, hop timeline; the payload is deleted at
completion) until ``SLUICE_COMPLETED_RETENTION_S`` has passed, plus one member of the
``completed`` zset. Under ``maxmemory-policy noeviction`` (which Sluice requires, because an
evicted key is a lost message) that memory is not optional: when the retention's share grows
past ``maxmemory``, Redis refuses writes and the intake refuses messages. So the retention
must be sized against the memory: bytes per job x completed jobs per second x seconds kept.

:data:`COMPLETED_JOB_BYTES` is measured, not guessed: :func:`measure_completed_job_bytes`
runs Chatwoot-shaped jobs (the intake's payload and hops, the reply pipeline's marks)
through a real worker on a temporary queue and adds ``MEMORY USAGE`` of each job's hash to
its share of the ``completed`` zset. ``benchmarks/memory.py --completed-only`` prints it for any
Redis, and ``tests/integration/test_retention_memory.py`` fails when the constant is more
than 10 % below what the test Redis measures, so the figure cannot silently go stale when the
job hash grows.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis

from sluice.queue.job import Job
from sluice.queue.queue import Queue
from sluice.worker import Worker

__all__ = [
    "COMPLETED_JOB_BYTES",
    "EXPIRES_ENTRY_BYTES",
    "CompletedJobMemory",
    "measure_completed_job_bytes",
    "projected_bytes",
]

EXPIRES_ENTRY_BYTES: Final = 32
"""A completed job's hash has a TTL, so it also has an entry in Redis's expires dict (a
24-byte dict entry and an 8-byte bucket slot) that ``MEMORY USAGE`` does not report."""

COMPLETED_JOB_BYTES: Final = 730
"""Redis bytes per completed job, measured with :func:`measure_completed_job_bytes` on
Redis 7.0.15 (x86-64, default listpack limits, 1000 jobs): 600 B of job hash (a listpack of
about 20 fields) + 95 B of ``completed`` zset entry (skiplist) + 32 B of expires-dict entry
(:data:`EXPIRES_ENTRY_BYTES`) = 727 B, rounded up. So each job/s of traffic kept for a day
costs 730 B x 86,400 = 63 MB."""

_MARKS: Final = ("broker_assigned", "reply_generated", "reply_sent")  # the pipeline's hops


@dataclass(frozen=True)
class CompletedJobMemory:
    """One measurement: mean bytes per completed job, split by where they live."""

    jobs: int
    job_hash_bytes: float
    zset_bytes: float
    expires_entry_bytes: float = EXPIRES_ENTRY_BYTES

    @property
    def per_job(self) -> float:
        """Everything one completed job holds until its retention ends."""
        return self.job_hash_bytes + self.zset_bytes + self.expires_entry_bytes


def projected_bytes(
    jobs_per_s: float, retention_s: float, bytes_per_job: float = COMPLETED_JOB_BYTES
) -> float:
    """Steady-state Redis bytes of the completed jobs kept for ``retention_s`` at a completion
    rate of ``jobs_per_s``: every job completed within the retention is still there."""
    return max(0.0, jobs_per_s) * max(0.0, retention_s) * bytes_per_job


async def measure_completed_job_bytes(
    redis: aioredis.Redis, jobs: int = 500, *, concurrency: int = 10
) -> CompletedJobMemory:
    """Complete ``jobs`` Chatwoot-shaped jobs on a temporary queue (deleted afterwards) and
    measure them with ``MEMORY USAGE ... SAMPLES 0`` (exact).

    Use more than 128 jobs: below Redis's ``zset-max-listpack-entries`` the zset is a compact
    listpack and its share per job looks smaller than it is in production. Each job is in a
    conversation of its own (a turn of one line), as most turns are.
    """
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    queue = Queue(f"memory-{uuid.uuid4().hex[:10]}", redis=redis, completed_retention_s=86_400)
    try:
        await _run_jobs(queue, jobs, concurrency)
        members: list[Any] = await redis.zrange(queue.keys.completed, 0, -1)
        ids = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        if len(ids) != jobs:
            raise RuntimeError(f"{len(ids)} of {jobs} jobs completed")
        pipe = redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.memory_usage(queue.keys.job(job_id), samples=0)
        sizes = [int(s or 0) for s in await pipe.execute()]
        zset = int(await redis.memory_usage(queue.keys.completed, samples=0) or 0)
        return CompletedJobMemory(jobs, sum(sizes) / jobs, zset / jobs)
    finally:  # also after a failed run: the temporary queue never outlives the call
        keys = [k async for k in redis.scan_iter(match=queue.keys.prefix + "*", count=1000)]
        for begin in range(0, len(keys), 500):
            await redis.delete(*keys[begin : begin + 500])


async def _run_jobs(queue: Queue, jobs: int, concurrency: int) -> None:
    """Enqueue ``jobs`` one-line turns shaped like the intake's and complete them with the
    pipeline's marks; returns once the worker has stopped, which acknowledges them all."""
    handled = 0
    all_handled = asyncio.Event()

    async def handler(job: Job) -> None:
        nonlocal handled
        for hop in _MARKS:
            job.mark(hop)
        handled += 1
        if handled == jobs:
            all_handled.set()

    worker = Worker(queue, handler, concurrency=concurrency, handle_signals=False, idle_poll_s=0.2)
    task = asyncio.create_task(worker.run())
    try:
        for n in range(jobs):
            message_id = 900_000_000 + n
            written_ms = 1_760_000_000_000.0 + n
            await queue.enqueue(
                f"1:{100_000 + n}",
                {
                    "account_id": 1,
                    "conversation_id": 100_000 + n,
                    "message_id": message_id,
                    "content": "Hello, my order #4711 has not arrived yet, can you check?",
                    "attachments": 0,
                    "sender_name": "Customer Name",
                    "created_at_ms": written_ms,
                },
                id=f"cw-{message_id}",
                hops={"source_created": written_ms, "received": written_ms + 40},
            )
        await asyncio.wait_for(all_handled.wait(), 60)
    finally:
        await worker.stop()
        await task
