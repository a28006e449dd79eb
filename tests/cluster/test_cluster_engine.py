"""The engine on a real Valkey Cluster (tests/conftest.py's ``valkey_cluster``): every
public method of Queue, the Worker's fetch, wake-up (BLPOP) and control channel through
redis-py's ``RedisCluster``, the property tests of tests/integration/test_properties.py,
and the rate limit across three worker processes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice import EnqueueRequest, Job, Queue, Worker
from sluice.redis.cluster import dedicated_client_like, is_cluster, node_for_key
from sluice.testing.cluster import ValkeyCluster
from sluice.worker import control
from tests.cluster.support import blocked_clients, blocked_on_cluster, wait_until

from ..integration import test_properties as props
from ..integration.conftest import delete_queue_keys
from ..integration.test_worker_processes import rate_limit_across_three_processes


@pytest.fixture
async def cluster_queue(cluster_client: Any) -> AsyncIterator[Queue]:
    name = f"tc-{uuid.uuid4().hex[:12]}"
    queue = Queue(name, redis=cluster_client, max_attempts=2)
    try:
        yield queue
    finally:
        await delete_queue_keys(cluster_client, name)


async def test_every_public_queue_method(cluster_queue: Queue) -> None:
    q = cluster_queue
    assert is_cluster(q.redis)
    first = await q.enqueue("c1", {"n": 0}, id="m1")
    assert (await q.add("c1", {"n": 0}, id="m1")).duplicate
    many = await q.enqueue_many([EnqueueRequest(key=f"c{i}", payload={"n": i}) for i in range(5)])
    assert len(set(many)) == 5 and first not in many
    counts = await q.counts()
    assert (counts["waiting"], counts["ready_lanes"]) == (6, 5)
    await q.set_rate_limit(100)
    await q.set_concurrency(3)
    assert await q.live_settings() == {"rate_limit": 100, "concurrency": 3}
    await q.set_rate_limit(None)
    await q.set_concurrency(None)
    assert await q.pause() and await q.is_paused() and await q.resume()
    assert await q.find_by_message_id("m1") == first
    record = await q.get_job(first)
    assert record is not None and record.state == "waiting"

    async def handler(job: Job) -> None:
        if job.payload["n"] == 3:
            raise RuntimeError("poison")

    worker = Worker(
        q, handler, concurrency=3, handle_signals=False, idle_poll_s=0.1, retry_base_ms=1
    )
    task = asyncio.create_task(worker.run())
    try:

        async def all_ended() -> bool:
            c = await q.counts()
            return bool(c["completed"] + c["dead"] == 6)

        await wait_until(all_ended)
        dead = await q.dead_letters()
        assert [d.payload["n"] for d in dead] == [3]
        assert await q.retry_dead(dead[0].id)

        async def dead_again() -> bool:
            return bool((await q.counts())["dead"] == 1)

        await wait_until(dead_again)
        assert await q.purge_dead() == 1
        await q.pause()
        await q.enqueue("c9", {"n": 9})
        await q.enqueue("c8", {"n": 8})
        assert await q.cancel("c9") == 1
        assert await q.drain() == 1
        counts = await q.counts()
        assert (counts["waiting"], counts["dead"], counts["completed"]) == (0, 0, 5)
    finally:
        await worker.stop()
        await task


async def test_idle_worker_is_woken_through_blpop_on_the_slot_owner(
    valkey_cluster: ValkeyCluster, cluster_queue: Queue
) -> None:
    """idle_poll_s is long, so only the wake token (BLPOP on the queue's node) can start the
    job quickly."""
    started = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()

    idle = blocked_clients(valkey_cluster)
    worker = Worker(cluster_queue, handler, concurrency=1, handle_signals=False, idle_poll_s=8)
    task = asyncio.create_task(worker.run())
    try:
        await blocked_on_cluster(valkey_cluster, idle + 1)  # its BLPOP waits on the node
        enqueued = time.monotonic()
        await cluster_queue.enqueue("c1", {})
        await asyncio.wait_for(started.wait(), 5)
        assert time.monotonic() - enqueued < 2.0
    finally:
        await worker.stop()
        await task


async def test_control_messages_reach_a_subscriber_on_the_cluster(cluster_queue: Queue) -> None:
    """pause.lua PUBLISHes on the node owning the slot; the cluster bus carries it to the
    worker's subscription, wherever it is connected."""
    heard: list[str] = []
    subscribed = asyncio.Event()
    listener = asyncio.create_task(control.listen(cluster_queue, heard.append, subscribed))
    try:
        await asyncio.wait_for(subscribed.wait(), 5)
        await cluster_queue.pause()
        await cluster_queue.cancel("c1")
        await cluster_queue.set_rate_limit(5)

        async def all_heard() -> bool:
            return len(heard) >= 3

        await wait_until(all_heard, 5)
        assert heard == ["pause", "cancel:c1", "rate"]
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


async def test_dedicated_client_is_a_cluster_client(cluster_queue: Queue) -> None:
    blocker = dedicated_client_like(cluster_queue.redis, read_timeout_s=5)
    try:
        assert is_cluster(blocker)
        await cluster_queue.redis.rpush(cluster_queue.keys.wake, "x")
        assert await blocker.blpop([cluster_queue.keys.wake], timeout=1) is not None
        assert is_cluster(cluster_queue.redis)
        assert node_for_key(cluster_queue.redis, cluster_queue.keys.meta).port > 0
    finally:
        await blocker.aclose()


# ---------------------------------------------------------------- the property tests


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=props.messages, concurrency=st.integers(2, 8), seed=st.integers(0, 2**16))
def test_cluster_exactly_once_in_order(
    valkey_cluster: ValkeyCluster, batch: list[tuple[int, int]], concurrency: int, seed: int
) -> None:
    asyncio.run(props.scenario(valkey_cluster.client, batch, concurrency, seed))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(st.integers(0, 5), min_size=1, max_size=80),
    concurrency=st.integers(1, 6),
    batch_size=st.integers(2, 6),
)
def test_cluster_batches_keep_order_and_exactly_once(
    valkey_cluster: ValkeyCluster, batch: list[int], concurrency: int, batch_size: int
) -> None:
    asyncio.run(props.batch_scenario(valkey_cluster.client, batch, concurrency, batch_size))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=props.burst_messages,
    concurrency=st.integers(1, 6),
    batch_size=st.integers(2, 6),
    seed=st.integers(0, 2**16),
)
def test_cluster_failed_batches_dead_letter_only_their_poison(
    valkey_cluster: ValkeyCluster,
    batch: list[tuple[int, int]],
    concurrency: int,
    batch_size: int,
    seed: int,
) -> None:
    asyncio.run(
        props.failing_batch_scenario(valkey_cluster.client, batch, concurrency, batch_size, seed)
    )


async def test_cluster_rate_limit_holds_across_three_processes(
    valkey_cluster: ValkeyCluster, cluster_client: Any, cluster_queue: Queue
) -> None:
    await rate_limit_across_three_processes(
        valkey_cluster.url, cluster_client, cluster_queue, "--cluster"
    )
