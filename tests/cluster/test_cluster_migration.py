"""A queue's slot moved to another master under load with Valkey 9's atomic slot migration
(CLUSTER MIGRATESLOTS): the clients follow the MOVED redirection, nothing acknowledged is
lost, nothing runs twice. Its own cluster: the session's keeps its slot layout."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from redis.exceptions import RedisError

from sluice import Job, Queue, Worker
from sluice.testing.cluster import ValkeyCluster, cluster_binary

from .support import Progress, stop_load

pytestmark = pytest.mark.slow


async def test_atomic_slot_migration_under_load_loses_nothing() -> None:
    cluster = ValkeyCluster(binary=cluster_binary())
    cluster.start()
    client = cluster.client(socket_timeout=5)
    queue = Queue("migrating", redis=client)
    handled: Counter[str] = Counter()
    acked: set[str] = set()
    errors: Counter[str] = Counter()
    stop = asyncio.Event()
    acks = Progress()

    async def handler(job: Job) -> None:
        handled[job.payload["m"]] += 1

    async def producer(k: int) -> None:
        i = 0
        while not stop.is_set():
            message = f"p{k}-{i}"
            try:
                await queue.enqueue(f"c{i % 20}", {"m": message}, id=message)
            except (RedisError, OSError) as exc:
                errors[type(exc).__name__] += 1
                await asyncio.sleep(0.02)  # a short back-off, then the same message again
                continue
            acked.add(message)
            acks.step()
            i += 1

    worker = Worker(
        queue, handler, concurrency=4, lease_ms=2000, heartbeat_ms=500, handle_signals=False
    )
    worker_task = asyncio.create_task(worker.run())
    producers = [asyncio.create_task(producer(k)) for k in range(4)]
    try:
        await acks.reach(200)  # the load is flowing
        slot = client.keyslot(queue.keys.meta)
        source = cluster.master_of_slot(slot)
        target = next(n for n in cluster.nodes[:3] if n.port != source.port)
        started = time.monotonic()
        with source.client() as direct:
            direct.execute_command(
                "CLUSTER", "MIGRATESLOTS", "SLOTSRANGE", slot, slot, "NODE", target.node_id
            )

        def moved() -> bool:
            return cluster.master_of_slot(slot).port == target.port

        await asyncio.to_thread(cluster.wait_for, "slot migrated", moved, 30)
        took = time.monotonic() - started
        await acks.reach(acks.count + 200)  # load acknowledged by the new master
        stop.set()
        await asyncio.wait_for(asyncio.gather(*producers), 15)
        deadline = time.monotonic() + 20
        while True:
            counts = await queue.counts()
            if counts["waiting"] == counts["active"] == 0 and set(handled) >= acked:
                break
            assert time.monotonic() < deadline, f"not drained: {counts}"
            await asyncio.sleep(0.1)  # the worker's progress in Redis: polled
        print(
            f"slot {slot} moved in {took:.2f} s under load: {len(acked)} enqueued, "
            f"errors {dict(errors)}"
        )
        assert client.get_node_from_key(queue.keys.meta).port == target.port
        assert acked - set(handled) == set()
        assert [m for m, n in handled.items() if n > 1] == []
        assert counts["completed"] == len(acked)
    finally:
        await stop_load(stop, producers, worker, worker_task)
        await client.aclose()
        cluster.stop()
