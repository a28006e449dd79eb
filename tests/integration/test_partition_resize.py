"""Resizing a partitioned queue keeps each conversation's order (docs/partitions.md).

A property over interleavings of enqueues by two producers (each routing by the layout it
last read, so one is often stale), reservations, completions, resizes and attempts to end
them: a conversation never has two jobs in flight, its messages complete in the order they
were enqueued, every message completes once, and the resize ends once the queue is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice import Completion, Job
from sluice.keys import split_job_id
from sluice.queue.fairness import FairnessCaps, read_caps
from sluice.queue.layout import ResizeInProgressError
from sluice.queue.partitioned import PartitionedQueue

from .test_partitions import delete_partitioned_keys

# Enqueues weigh double: a conversation needs messages on both sides of a resize.
enqueue = st.tuples(st.just("enq"), st.integers(0, 1), st.integers(0, 3))
operation = st.one_of(
    enqueue,
    enqueue,
    st.tuples(st.just("take"), st.integers(1, 3), st.just(0)),
    st.tuples(st.just("done"), st.integers(0, 10), st.just(0)),
    st.tuples(st.just("resize"), st.integers(1, 4), st.just(0)),
    st.tuples(st.just("finish"), st.just(0), st.just(0)),
)


class Run:
    """The model: what was enqueued per conversation, what is held, what completed."""

    def __init__(self, worker: PartitionedQueue) -> None:
        self.worker = worker
        self.sent: dict[str, list[int]] = defaultdict(list)
        self.completed: dict[str, list[int]] = defaultdict(list)
        self.held: list[Job] = []
        self.count = 0

    async def take(self, n: int) -> int:
        got = await self.worker.reserve(n, worker_id="w", lease_ms=60_000)
        for job in got.jobs:
            running = {j.key for j in self.held}
            assert job.key not in running, f"two jobs of {job.key} in flight"
            self.held.append(job)
        return len(got.jobs)

    async def done(self, index: int) -> None:
        if not self.held:
            return
        job = self.held.pop(index % len(self.held))
        lost, _, _ = await self.worker.complete([Completion(job.id, job.token, {})], worker_id="w")
        assert lost == []
        self.completed[job.key].append(job.payload["n"])


async def scenario(redis_url: str, start: int, ops: list[tuple[str, int, int]], tag: int) -> None:
    client = aioredis.Redis.from_url(redis_url)
    name = f"t-resize-{tag}-{id(ops):x}"
    try:
        producers = [PartitionedQueue(name, redis=client, partitions=start) for _ in range(2)]
        admin = PartitionedQueue(name, redis=client, partitions=start)
        run = Run(PartitionedQueue(name, redis=client, partitions=start))
        for op, a, b in ops:
            if op == "enq":
                key = f"c{b}"
                run.count += 1
                run.sent[key].append(run.count)
                await producers[a].enqueue(key, {"n": run.count})
            elif op == "take":
                await run.take(a)
            elif op == "done":
                await run.done(a)
            elif op == "resize":
                with contextlib.suppress(ResizeInProgressError):
                    await admin.resize(a)
            else:
                await admin.finish_resize()
        # Work everything off, then the resize in progress (if any) can end. (A worker reads
        # the layout again within a second; here at once, to see partitions added meanwhile.)
        await run.worker.check_layout(refresh=True)
        for _ in range(10 * run.count + 10):
            if run.held:
                await run.done(0)
            elif not await run.take(3):
                break
        assert not run.held
        assert dict(run.completed) == dict(run.sent)
        assert await admin.finish_resize()
        layout = await admin.check_layout(refresh=True)
        assert not layout.resizing
    finally:
        await delete_partitioned_keys(client, name)
        await client.aclose()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(1, 4),
    ops=st.lists(operation, min_size=1, max_size=60),
    tag=st.integers(0, 2**31),
)
def test_resizing_keeps_each_conversations_order(
    redis_url: str, start: int, ops: list[tuple[str, int, int]], tag: int
) -> None:
    asyncio.run(scenario(redis_url, start, ops, tag))


async def test_a_conversation_stays_on_its_old_partition_until_its_lane_is_empty(
    redis_client: aioredis.Redis, queue_name: str
) -> None:
    q = PartitionedQueue(queue_name, redis=redis_client, partitions=2)
    try:
        key = next(f"k{n}" for n in range(100) if _moves(f"k{n}", 2, 3))
        first = await q.enqueue(key, {"n": 1})
        await q.resize(3)
        second = await q.enqueue(key, {"n": 2})
        assert split_job_id(second)[0] == split_job_id(first)[0]  # stays: its lane is busy
        assert not await q.finish_resize()  # it is away from its new home
        for _ in range(2):
            job = (await q.reserve(1, worker_id="w")).jobs[0]
            await q.complete([Completion(job.id, job.token, {})], worker_id="w")
        assert await q.finish_resize()
        third = await q.enqueue(key, {"n": 3})
        assert split_job_id(third)[0] == _home(key, 3)
    finally:
        await delete_partitioned_keys(redis_client, queue_name)


def _home(key: str, n: int) -> int:
    from sluice.keys import partition_of

    return partition_of(key, n)


def _moves(key: str, old: int, new: int) -> bool:
    return _home(key, old) != _home(key, new)


async def test_a_producer_with_a_stale_layout_is_refused_and_routes_again(
    redis_client: aioredis.Redis, queue_name: str
) -> None:
    stale = PartitionedQueue(queue_name, redis=redis_client, partitions=2)
    fresh = PartitionedQueue(queue_name, redis=redis_client, partitions=2)
    worker = PartitionedQueue(queue_name, redis=redis_client, partitions=2)
    try:
        key = next(f"k{n}" for n in range(100) if _moves(f"k{n}", 2, 3))
        await stale.enqueue(key, {"n": 1})  # reads the layout (2 partitions) and keeps it
        job = (await worker.reserve(1, worker_id="w")).jobs[0]
        await worker.complete([Completion(job.id, job.token, {})], worker_id="w")
        await fresh.resize(3)
        second = await fresh.enqueue(key, {"n": 2})  # nothing left on the old one: home
        assert split_job_id(second)[0] == _home(key, 3)
        # The stale producer would send it to the old partition; that partition now knows
        # a later epoch and refuses, so it reads the layout again and follows the lane.
        third = await stale.enqueue(key, {"n": 3})
        assert split_job_id(third)[0] == _home(key, 3)
        await worker.check_layout(refresh=True)
        taken = await worker.reserve(5, worker_id="w")
        assert [j.payload["n"] for j in taken.jobs] == [2]
    finally:
        await delete_partitioned_keys(redis_client, queue_name)


async def test_partitions_added_while_paused_start_paused(
    redis_client: aioredis.Redis, queue_name: str
) -> None:
    q = PartitionedQueue(queue_name, redis=redis_client, partitions=2)
    try:
        await q.pause()
        await q.resize(4)
        assert all(c["paused"] for c in await q.partition_counts())
        assert len(await q.partition_counts()) == 4
    finally:
        await delete_partitioned_keys(redis_client, queue_name)


async def test_partitions_added_by_a_resize_enforce_the_fairness_caps(
    redis_client: aioredis.Redis, queue_name: str
) -> None:
    """The caps live in each partition's meta (set_fairness writes every partition there
    is); workers write them only when they start, so a partition new to the queue had none
    and its accounts ran uncapped until some worker restarted. Copied as a pause is."""
    q = PartitionedQueue(queue_name, redis=redis_client, partitions=2)
    try:
        caps = FairnessCaps(concurrency=2, rate=5)
        await q.set_fairness(caps)
        layout = await q.resize(4)
        parts = [layout.keys(q.keys, p) for p in range(4)]
        assert [await read_caps(redis_client, part) for part in parts] == [caps] * 4
    finally:
        await delete_partitioned_keys(redis_client, queue_name)


async def test_a_resize_whose_announcer_died_halfway_does_not_block_producers(
    redis_client: aioredis.Redis, queue_name: str
) -> None:
    q = PartitionedQueue(queue_name, redis=redis_client, partitions=2)
    try:
        await q.enqueue("a", {})
        # The layout moved to a new epoch, but no partition was told (the resizer died).
        await redis_client.hset(q.keys.layout, mapping={"partitions": 3, "previous": 2})
        await redis_client.hincrby(q.keys.layout, "epoch", 1)
        await redis_client.hset(q.keys.layout, "highest", 3)
        assert (await q.check_layout(refresh=True)).partitions == 3  # read, not announced
        job_id = await asyncio.wait_for(q.enqueue("b", {}), 2)
        assert await q.get_job(job_id) is not None
    finally:
        await delete_partitioned_keys(redis_client, queue_name)
