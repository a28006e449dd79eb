"""Tenant fairness on a real Valkey Cluster: the caps' keys (fair:run/park/tat/parked/stats)
share the queue's hash tag, so reservations with caps on run as one script in one slot; a
partitioned queue keeps them per partition, each on its own master."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sluice import Completion, Queue
from sluice.keys import partition_of
from sluice.queue.fairness import FairnessCaps
from sluice.redis.cluster import is_cluster
from sluice.testing.cluster import ValkeyCluster

from ..integration import test_fairness as fair
from ..integration.conftest import delete_queue_keys


@pytest.fixture
async def cluster_queue(cluster_client: Any) -> AsyncIterator[Queue]:
    name = f"tf-{uuid.uuid4().hex[:12]}"
    queue = Queue(name, redis=cluster_client)
    try:
        yield queue
    finally:
        await delete_queue_keys(cluster_client, name)


async def test_caps_hold_back_lend_and_release_on_a_cluster(cluster_queue: Queue) -> None:
    q = cluster_queue
    assert is_cluster(q.redis)
    await q.set_fairness(FairnessCaps(concurrency=1, rate=50))
    for key in ("1:a", "1:b", "1:c", "2:a"):
        await q.enqueue(key, {})
    taken = await q.reserve(2, worker_id="w")
    assert [j.key for j in taken.jobs] == ["1:a", "2:a"]
    snap = await q.fairness()
    assert {a.account: (a.active, a.held) for a in snap.accounts} == {"1": (1, 2), "2": (1, 0)}
    first = taken.jobs[0]
    _, lent, _ = await q.complete([Completion(first.id, first.token, {})], reserve=1, worker_id="w")
    assert [j.key for j in lent.jobs] == ["1:b"]
    assert await q.set_fairness(FairnessCaps()) == 1  # 1:c back to ready
    rest = await q.reserve(5, worker_id="w")
    assert [j.key for j in rest.jobs] == ["1:c"]


async def test_a_partitioned_queue_caps_each_partition(
    valkey_cluster: ValkeyCluster, cluster_client: Any
) -> None:
    name = f"tfp-{uuid.uuid4().hex[:12]}"
    queue = Queue(name, redis=cluster_client, partitions=3)
    try:
        await queue.set_fairness(FairnessCaps(concurrency=1))
        keys = [f"1:{n}" for n in range(12)] + ["2:x"]
        for key in keys:
            await queue.enqueue(key, {})
        taken = await queue.reserve(6, worker_id="w")
        assert taken.jobs
        # Every partition heard the caps (each enforces them on its own lanes, in its own
        # slot), and the merged view counts the turns of all of them.
        for engine in await queue.current_engines():
            assert (await engine.fairness()).caps.concurrency == 1
        snap = await queue.fairness()
        assert sum(a.active for a in [*snap.accounts, snap.other]) == len(taken.jobs)
        assert {partition_of(k, 3) for k in keys} == {0, 1, 2}
    finally:
        await queue.set_fairness(FairnessCaps())
        await delete_queue_keys(cluster_client, name)
        await delete_queue_keys(cluster_client, f"{name}[#~]*")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cluster_cap_holds_exactly_once_in_order(valkey_cluster: ValkeyCluster, seed: int) -> None:
    batch = [(n % 3, n % 4, n % 5 == 0) for n in range(30)]
    asyncio.run(fair.fair_scenario(valkey_cluster.client, batch, cap=1 + seed % 2, seed=seed))
