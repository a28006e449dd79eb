"""A master killed under load: its replica is promoted and the engine follows it. What was
acknowledged and then lost is measured, with and without WAIT-based enqueue durability
(``Queue(wait_replicas=1)``); docs/cluster.md reports the figures.

Each run starts a cluster of its own (the session's stays whole for the other tests)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.exceptions import RedisError

from sluice import EnqueueRequest, Job, Queue, Worker
from sluice.queue.durable import NotReplicatedError
from sluice.testing.cluster import ValkeyCluster, cluster_binary

from ..integration.conftest import delete_queue_keys
from .support import Progress, stop_load

pytestmark = pytest.mark.slow

PRODUCERS = 4
LAG_S = 0.3  # how far the replica is behind when its master dies (a duration by design)
LOAD_AFTER = 200  # and acknowledged a second after the promotion before it stops
CONVERSATIONS = 20


@dataclass
class Outcome:
    acked: set[str] = field(default_factory=set)
    acked_at: dict[str, float] = field(default_factory=dict)
    handled: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    killed_at: float = 0.0
    promoted_s: float = 0.0
    settled_at: float = 0.0  # a second after the promotion: the load measured after it
    first_ack_after_kill_s: float | None = None  # the first enqueue sent after the kill

    vanished: set[str] = field(default_factory=set)  # acknowledged, not in Redis afterwards

    @property
    def lost(self) -> set[str]:
        """Acknowledged and never handled: a customer's message nobody answers."""
        return self.acked - set(self.handled)

    def report(self, label: str) -> str:
        before = [m for m in self.acked if self.acked_at[m] < self.killed_at]
        lost_window = [self.killed_at - self.acked_at[m] for m in self.vanished | self.lost]
        p50 = statistics.median(self.latencies_ms) if self.latencies_ms else 0.0
        return (
            f"{label}: acknowledged {len(self.acked)} ({len(before)} before the kill), "
            f"vanished from Redis {len(self.vanished)}, never handled {len(self.lost)} "
            "(acknowledged within "
            f"{max(lost_window, default=0) * 1000:.0f} ms before the kill), "
            f"handled twice {sum(1 for n in self.handled.values() if n > 1)}, "
            f"promotion {self.promoted_s:.2f} s, first acknowledgement after the kill "
            f"{self.first_ack_after_kill_s or 0:.2f} s, enqueue p50 {p50:.2f} ms, "
            f"errors {dict(self.errors)}"
        )


async def run_failover(wait_replicas: int) -> Outcome:
    out = Outcome()
    cluster = ValkeyCluster(binary=cluster_binary())
    cluster.start()
    client = cluster.client(socket_timeout=5)
    queue = Queue("failover", redis=client, wait_replicas=wait_replicas, wait_timeout_ms=500)
    stop = asyncio.Event()
    acks = Progress()  # every acknowledged enqueue
    settled_acks = Progress()  # those acknowledged a second after the promotion

    async def handler(job: Job) -> None:
        out.handled[job.payload["m"]] += 1

    async def producer(k: int) -> None:
        i = 0
        while not stop.is_set():
            message = f"p{k}-{i}"
            started, started_at = time.perf_counter(), time.monotonic()
            try:
                await queue.enqueue(f"c{i % CONVERSATIONS}", {"m": message}, id=message)
            except (RedisError, OSError, NotReplicatedError) as exc:
                out.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.05)  # then the same message again (dedupe makes it safe)
                continue
            now = time.monotonic()
            if out.killed_at and started_at > out.killed_at and out.first_ack_after_kill_s is None:
                out.first_ack_after_kill_s = now - out.killed_at
            out.latencies_ms.append((time.perf_counter() - started) * 1000)
            out.acked.add(message)
            out.acked_at[message] = now
            acks.step()
            if out.settled_at and now > out.settled_at:
                settled_acks.step()
            i += 1

    worker = Worker(
        queue,
        handler,
        concurrency=4,
        lease_ms=2000,
        heartbeat_ms=500,
        handle_signals=False,
        idle_poll_s=0.1,
    )
    worker_task = asyncio.create_task(worker.run())
    producers = [asyncio.create_task(producer(k)) for k in range(PRODUCERS)]
    try:
        # A second of load before the fault, by design: what the replica holds when its
        # master dies. (Waiting for 200 acknowledgements and an online replica instead
        # lost every earlier write in the promotion: the measurement needs this stretch.)
        await asyncio.sleep(1.0)
        slot = client.keyslot(queue.keys.meta)
        master = cluster.master_of_slot(slot)
        replica = cluster.replica_of(master)
        # The replica falls LAG_S behind: frozen (so it cannot reconnect), its replication
        # link cut by the master. What the master acknowledges meanwhile exists only on the
        # master when it dies, as with a replica behind on a slow link. (Freezing alone
        # is not enough: the kernel keeps accepting the stream into the socket's buffer.)
        cluster.freeze(replica)
        with master.client() as direct:
            direct.execute_command("CLIENT", "KILL", "TYPE", "replica")
        await asyncio.sleep(LAG_S)
        out.killed_at = time.monotonic()
        cluster.kill(master)
        cluster.thaw(replica)

        def promoted() -> bool:
            return cluster.master_of_slot(slot).port == replica.port and cluster.state_ok(replica)

        await asyncio.to_thread(cluster.wait_for, "replica promoted", promoted, 30)
        out.promoted_s = time.monotonic() - out.killed_at
        out.settled_at = out.killed_at + out.promoted_s + 1
        # The old master comes back as the new one's replica (WAIT needs one).
        await asyncio.to_thread(cluster.restart, master)
        await settled_acks.reach(LOAD_AFTER)  # load acknowledged by the settled new master
        stop.set()
        await asyncio.wait_for(asyncio.gather(*producers), 15)
        deadline = time.monotonic() + 20
        while set(out.handled) < out.acked - out.lost or not await _settled(queue):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)  # the worker's progress in Redis: polled
        out.vanished = await _vanished(queue, sorted(out.acked))
    finally:
        await stop_load(stop, producers, worker, worker_task)
        await client.aclose()
        cluster.stop()
    return out


async def _vanished(queue: Queue, messages: list[str]) -> set[str]:
    """Acknowledged messages whose dedupe record (kept a day) the new master lacks: their
    enqueue never reached the replica that was promoted."""
    pipe = queue.redis.pipeline(transaction=False)
    for message in messages:
        pipe.get(queue.keys.dedupe(message))
    found = await pipe.execute()
    return {m for m, job in zip(messages, found, strict=True) if job is None}


async def _settled(queue: Queue) -> bool:
    try:
        counts: dict[str, Any] = await queue.counts()
    except (RedisError, OSError):
        return False
    return bool(counts["waiting"] == 0 and counts["active"] == 0 and counts["delayed"] == 0)


async def test_master_killed_under_load_async_replication() -> None:
    """Without WAIT: the engine follows the promoted replica and keeps going; whatever the
    old master acknowledged but had not replicated vanishes (counted, not forbidden: it is
    what asynchronous replication means)."""
    out = await run_failover(wait_replicas=0)
    print(out.report("wait_replicas=0"))
    assert out.promoted_s < 15
    assert out.first_ack_after_kill_s is not None, "no enqueue succeeded after the failover"
    after = [m for m in out.acked if out.acked_at[m] > out.killed_at + out.promoted_s + 1]
    assert after and not (set(after) - set(out.handled)), "messages after the failover lost"


async def test_master_killed_under_load_with_wait_loses_nothing_acknowledged() -> None:
    """With wait_replicas=1 (one replica per master), every acknowledged enqueue survives."""
    out = await run_failover(wait_replicas=1)
    print(out.report("wait_replicas=1"))
    assert out.first_ack_after_kill_s is not None
    assert out.vanished == set(), f"{len(out.vanished)} acknowledged enqueues vanished"
    assert out.lost == set(), f"{len(out.lost)} acknowledged messages never handled"


async def test_cost_of_waiting_for_a_replica(valkey_cluster: ValkeyCluster) -> None:
    """What wait_replicas=1 costs per enqueue (one producer, a healthy loopback cluster):
    the master's round trip plus the replica's acknowledgement (docs/cluster.md)."""
    client = valkey_cluster.client()
    figures: dict[int, float] = {}
    try:
        for replicas in (0, 1, 0, 1):  # interleaved, so a slow moment hits both
            queue = Queue(f"cost-{replicas}", redis=client, wait_replicas=replicas)
            times = []
            for n in range(300):
                started = time.perf_counter()
                await queue.enqueue(f"c{n % 20}", {"n": n})
                times.append((time.perf_counter() - started) * 1000)
            figures[replicas] = statistics.median(times)
            batch = time.perf_counter()
            await queue.enqueue_many(
                [EnqueueRequest(key=f"c{n % 20}", payload={"n": n}) for n in range(100)]
            )
            print(
                f"wait_replicas={replicas}: enqueue p50 {figures[replicas]:.3f} ms, "
                f"enqueue_many(100) {(time.perf_counter() - batch) * 1000:.1f} ms"
            )
            await delete_queue_keys(client, queue.name)
    finally:
        await client.aclose()
    assert set(figures) == {0, 1}
