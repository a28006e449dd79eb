"""Property: whatever the interleaving, every message ends exactly once (completed or
dead-lettered), no conversation ever has two jobs running, and order holds per
conversation; with bursts batched, a line is dead-lettered only for its own failures (a
failed batch is retried one job at a time)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice import EnqueueRequest, Job, Queue, Worker

from .conftest import delete_queue_keys

MAX_ATTEMPTS = 3

# Where a scenario runs: a Redis URL, or a factory of clients (the cluster's, see
# tests/cluster/test_cluster_engine.py, which runs these scenarios on a Valkey Cluster).
Target = str | Callable[[], Any]


def connect(target: Target) -> Any:
    """A fresh client for one scenario (each runs in its own event loop)."""
    return aioredis.Redis.from_url(target) if isinstance(target, str) else target()


# A message: (conversation, how many times its handler fails before it succeeds).
# MAX_ATTEMPTS or more failures make it a poison message that must be dead-lettered.
messages = st.lists(
    st.tuples(st.integers(0, 7), st.integers(0, MAX_ATTEMPTS)),
    min_size=1,
    max_size=60,
)


async def run_interleaved(
    queue: Queue,
    handler: Any,
    batch: list[tuple[int, int]],
    rng: random.Random,
    all_ended: asyncio.Event,
    *,
    concurrency: int,
    batch_size: int = 1,
) -> None:
    """Enqueue ``batch`` ((conversation, planned failures) per message, ``seq`` = index)
    interleaved with consuming: a random share before the worker starts, the rest while it
    runs; return once the handler has set ``all_ended``."""
    requests = [
        EnqueueRequest(key=f"c{conv}", payload={"seq": seq, "fails": fails})
        for seq, (conv, fails) in enumerate(batch)
    ]
    split = rng.randint(0, len(requests))
    await queue.enqueue_many(requests[:split])
    worker = Worker(
        queue,
        handler,
        concurrency=concurrency,
        batch_size=batch_size,
        retry_base_ms=1,
        retry_max_ms=4,
        handle_signals=False,
        idle_poll_s=0.05,
    )
    task = asyncio.create_task(worker.run())
    try:
        for request in requests[split:]:
            await queue.enqueue(request.key, request.payload)
        await asyncio.wait_for(all_ended.wait(), 30)
    finally:
        await worker.stop()
        await task


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=messages, concurrency=st.integers(2, 8), seed=st.integers(0, 2**16))
def test_exactly_once_in_order_never_two_per_conversation(
    redis_url: str, batch: list[tuple[int, int]], concurrency: int, seed: int
) -> None:
    asyncio.run(scenario(redis_url, batch, concurrency, seed))


async def scenario(
    url: Target, batch: list[tuple[int, int]], concurrency: int, seed: int, partitions: int = 1
) -> None:
    rng = random.Random(seed)
    client = connect(url)
    name = f"prop-{rng.getrandbits(48):012x}"
    queue = Queue(name, redis=client, max_attempts=MAX_ATTEMPTS, partitions=partitions)
    running_conversations: set[str] = set()
    starts: dict[str, list[int]] = defaultdict(list)
    successes: Counter[int] = Counter()
    violations: list[str] = []
    expected_ok = sum(1 for _, fails in batch if fails < MAX_ATTEMPTS)
    expected_dead = len(batch) - expected_ok
    ended = 0
    all_ended = asyncio.Event()

    async def handler(job: Job) -> None:
        nonlocal ended
        seq, fails = job.payload["seq"], job.payload["fails"]
        if job.key in running_conversations:
            violations.append(f"two jobs of {job.key} at once")
        running_conversations.add(job.key)
        starts[job.key].append(seq)
        try:
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)  # yield to other slots: random interleavings
            if job.attempt <= fails:
                if job.attempt == MAX_ATTEMPTS:
                    ended += 1
                raise RuntimeError(f"planned failure {job.attempt}")
            successes[seq] += 1
            ended += 1
        finally:
            running_conversations.discard(job.key)
            if ended == len(batch):
                all_ended.set()

    await run_interleaved(queue, handler, batch, rng, all_ended, concurrency=concurrency)
    try:
        counts = await queue.counts()
        assert violations == []
        assert counts["dead"] == expected_dead
        assert counts["completed"] == expected_ok
        assert (counts["waiting"], counts["active"], counts["delayed"]) == (0, 0, 0)
        assert all(n == 1 for n in successes.values())
        assert len(successes) == expected_ok
        for conv, seqs in starts.items():
            assert seqs == sorted(seqs), f"order broken in {conv}: {seqs}"
    finally:
        await delete_queue_keys(client, name)
        if partitions > 1:
            # The other partitions' and the limiter's tags: {name#...}, and on a cluster
            # {name~k#p} where the layout salted a tag to reach another master. The name
            # comes from the seed, which Hypothesis replays: nothing may be left behind.
            await delete_queue_keys(client, f"{name}[#~]*")
        await client.aclose()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(st.integers(0, 5), min_size=1, max_size=80),
    concurrency=st.integers(1, 6),
    batch_size=st.integers(2, 6),
)
def test_batches_keep_order_and_exactly_once(
    redis_url: str, batch: list[int], concurrency: int, batch_size: int
) -> None:
    asyncio.run(batch_scenario(redis_url, batch, concurrency, batch_size))


async def batch_scenario(url: Target, convs: list[int], concurrency: int, batch_size: int) -> None:
    client = connect(url)
    name = f"propb-{random.getrandbits(48):012x}"
    queue = Queue(name, redis=client)
    running: set[str] = set()
    seen: dict[str, list[int]] = defaultdict(list)
    handled: Counter[int] = Counter()
    violations: list[str] = []
    all_done = asyncio.Event()

    async def handler(job: Job) -> None:
        if job.key in running:
            violations.append(f"two turns of {job.key} at once")
        running.add(job.key)
        if len(job.members) > batch_size:
            violations.append(f"batch of {len(job.members)} > {batch_size}")
        await asyncio.sleep(0)
        for member in job.members:
            if member.key != job.key:
                violations.append("a batch mixed conversations")
            seen[job.key].append(member.payload["seq"])
            handled[member.payload["seq"]] += 1
        running.discard(job.key)
        if sum(handled.values()) >= len(convs):
            all_done.set()

    worker = Worker(
        queue,
        handler,
        concurrency=concurrency,
        batch_size=batch_size,
        handle_signals=False,
        idle_poll_s=0.05,
    )
    task = asyncio.create_task(worker.run())
    try:
        for seq, conv in enumerate(convs):
            await queue.enqueue(f"c{conv}", {"seq": seq})
        await asyncio.wait_for(all_done.wait(), 30)
    finally:
        await worker.stop()
        await task
    try:
        assert violations == []
        assert all(n == 1 for n in handled.values()) and len(handled) == len(convs)
        for conv, seqs in seen.items():
            assert seqs == sorted(seqs), f"order broken in {conv}: {seqs}"
        assert (await queue.counts())["completed"] == len(convs)
    finally:
        await delete_queue_keys(client, name)
        await client.aclose()


# Fewer conversations than `messages`, so that lines pile up into bursts.
burst_messages = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, MAX_ATTEMPTS)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=burst_messages,
    concurrency=st.integers(1, 6),
    batch_size=st.integers(2, 6),
    seed=st.integers(0, 2**16),
)
def test_failed_batches_dead_letter_only_their_poison(
    redis_url: str, batch: list[tuple[int, int]], concurrency: int, batch_size: int, seed: int
) -> None:
    asyncio.run(failing_batch_scenario(redis_url, batch, concurrency, batch_size, seed))


async def failing_batch_scenario(
    url: Target, batch: list[tuple[int, int]], concurrency: int, batch_size: int, seed: int
) -> None:
    """Bursts batched, each line failing its first `fails` attempts (its own attempt count):
    a turn fails when any of its lines does. The model: a batch that failed is retried one
    job at a time, so a line that joins a batch has never failed (a batch of more than one
    holds first attempts only), and a line is dead-lettered exactly when it fails all
    MAX_ATTEMPTS of its own attempts; every other line is answered once. Lines end
    (completed or dead-lettered) in conversation order."""
    rng = random.Random(seed)
    client = connect(url)
    name = f"propf-{rng.getrandbits(48):012x}"
    queue = Queue(name, redis=client, max_attempts=MAX_ATTEMPTS)
    await queue.set_events(True)  # the order check below reads the completions
    running: set[str] = set()
    answered: dict[str, list[int]] = defaultdict(list)
    successes: Counter[int] = Counter()
    violations: list[str] = []
    poison = {seq for seq, (_, fails) in enumerate(batch) if fails >= MAX_ATTEMPTS}
    ended = 0
    all_ended = asyncio.Event()

    async def handler(job: Job) -> None:
        nonlocal ended
        members = job.members
        if job.key in running:
            violations.append(f"two turns of {job.key} at once")
        running.add(job.key)
        if len(members) > 1 and any(m.attempt > 1 for m in members):
            violations.append(f"a retried line was batched: {[(m.id, m.attempt) for m in members]}")
        try:
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)  # yield to other slots: random interleavings
            if any(m.attempt <= m.payload["fails"] for m in members):
                if job.attempt >= MAX_ATTEMPTS:
                    ended += len(members)  # dead-lettered (one line: see the model)
                raise RuntimeError(f"planned failure {job.attempt}")
            for m in members:
                answered[job.key].append(m.payload["seq"])
                successes[m.payload["seq"]] += 1
            ended += len(members)
        finally:
            running.discard(job.key)
            if ended >= len(batch):
                all_ended.set()

    await run_interleaved(
        queue, handler, batch, rng, all_ended, concurrency=concurrency, batch_size=batch_size
    )
    try:
        assert violations == []
        dead = await queue.dead_letters(limit=len(batch))
        assert sorted(d.payload["seq"] for d in dead) == sorted(poison)
        assert set(successes) == set(range(len(batch))) - poison
        assert all(n == 1 for n in successes.values())
        counts = await queue.counts()
        assert (counts["waiting"], counts["active"], counts["delayed"]) == (0, 0, 0)
        assert counts["completed"] == len(batch) - len(poison)
        for conv, seqs in answered.items():
            assert seqs == sorted(seqs), f"order broken in {conv}: {seqs}"
        # Job ids grow in enqueue order, so each conversation's ends must too.
        ends: dict[str, list[int]] = defaultdict(list)
        for _, entry in await client.xrange(queue.keys.events):
            if entry[b"type"] in (b"completed", b"dead"):
                ends[entry[b"key"].decode()].append(int(entry[b"job"]))
        for conv, ids in ends.items():
            assert ids == sorted(ids), f"{conv} ended out of order: {ids}"
        assert sum(len(ids) for ids in ends.values()) == len(batch)
    finally:
        await delete_queue_keys(client, name)
        await client.aclose()
