"""Evaluators on a real Redis: one leader notifies, takeover keeps state, commands applied."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis

from sluice.alerts import AlertEngine, Notification
from sluice.alerts.channels import Dispatcher
from sluice.alerts.config import load_alert_settings
from sluice.alerts.evaluator import AlertEvaluator
from sluice.alerts.rules import default_rules
from sluice.alerts.store import AlertStore
from sluice.keys import QueueKeys
from sluice.monitor import signals as sig
from sluice.monitor.leader import LeaderLease
from sluice.monitor.signals import Signals

TTL_MS = 300
WAIT = "queue_wait_high"
UTIL = "worker_utilization_high"


class RecordingChannel:
    """A real Channel implementation that keeps what it was sent (in-process receiver)."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.batches: list[list[Notification]] = []
        self._changed = asyncio.Condition()

    async def send(self, notifications: Sequence[Notification]) -> None:
        async with self._changed:
            self.batches.append(list(notifications))
            self._changed.notify_all()

    async def check(self) -> str | None:
        return None

    @property
    def kinds(self) -> list[tuple[str, str]]:
        return [(n.kind, n.alert.rule) for batch in self.batches for n in batch]

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.kinds) >= count), within)


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Node:
    """One process: its own engine, store, lease, dispatcher and receiver."""

    evaluator: AlertEvaluator
    channel: RecordingChannel
    dispatcher: Dispatcher
    lease: LeaderLease

    @property
    def engine(self) -> AlertEngine:
        return self.evaluator.engine

    async def step(self) -> bool:
        acted = await self.evaluator.step()
        assert await self.dispatcher.flush(5.0)
        return acted


@dataclass
class Cluster:
    redis: aioredis.Redis
    keys: QueueKeys
    clock: Clock
    signals: dict[str, float | None] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)

    async def read_signals(self) -> Signals:
        return dict(self.signals)

    def node(self, holder: str, interval_s: float = 0.05) -> Node:
        settings = load_alert_settings({"SLUICE_ALERT_FOR_S": "0"})
        engine = AlertEngine(default_rules(settings), settings, self.keys.name)
        store = AlertStore(self.redis, self.keys)
        lease = LeaderLease(self.redis, store.lease_key, holder, TTL_MS)
        channel = RecordingChannel()
        dispatcher = Dispatcher([channel])
        evaluator = AlertEvaluator(
            self.redis,
            self.keys,
            engine,
            store,
            dispatcher,
            lease,
            self.read_signals,
            interval_s,
            clock=self.clock,
        )
        node = Node(evaluator, channel, dispatcher, lease)
        self.nodes.append(node)
        return node


@pytest.fixture
async def cluster(redis_client: aioredis.Redis, queue_name: str) -> AsyncIterator[Cluster]:
    c = Cluster(redis_client, QueueKeys(queue_name), Clock())
    yield c
    for node in c.nodes:
        await node.dispatcher.close(1.0)
    found = [k async for k in redis_client.scan_iter(match=f"sluice:{{{queue_name}}}:*")]
    if found:
        await redis_client.delete(*found)


async def become_leader(node: Node, seconds: float = 3.0) -> float:
    """Step until the node leads (bounded: a lease expiry is polled, not awaited)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await node.step():
            return time.monotonic()
        await asyncio.sleep(0.02)
    raise AssertionError("no takeover within the bound")


async def test_only_the_leader_sends_notifications(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    cluster.signals[sig.QUEUE_WAIT_P95_MS_1M] = 12_000
    for _ in range(5):
        acted = [await a.step(), await b.step()]
        assert acted == [True, False]
        cluster.clock.now += 5
    assert a.channel.kinds == [("firing", WAIT)]
    assert b.channel.kinds == []
    assert a.evaluator.is_leader and not b.evaluator.is_leader
    history = await a.evaluator.store.history(10)
    assert [h.event for h in reversed(history)] == ["pending", "firing"]


async def test_takeover_continues_from_the_saved_state(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    cluster.signals[sig.QUEUE_WAIT_P95_MS_1M] = 12_000
    assert await a.step()
    last_renewal = time.monotonic()
    assert not await b.step()
    # a dies: it stops stepping (no renew, no release).
    took_over = await become_leader(b)
    assert took_over - last_renewal >= TTL_MS / 1000 * 0.8
    assert b.engine.get(WAIT).status == "firing"  # loaded, not re-derived
    assert b.channel.kinds == []  # receivers were told already: no second "firing"
    # Back to normal: the new leader resolves what the old one announced.
    cluster.signals[sig.QUEUE_WAIT_P95_MS_1M] = 1_000
    cluster.clock.now += 5
    assert await b.step()
    cluster.clock.now += 301  # past the cooldown
    assert await b.step()
    assert b.channel.kinds == [("resolved", WAIT)]
    # The old leader wakes up: its renew fails, it neither notifies nor writes.
    saved = await b.evaluator.store.load()
    assert not await a.step()
    assert not a.evaluator.is_leader
    assert a.channel.kinds == [("firing", WAIT)]
    assert await b.evaluator.store.load() == saved


async def test_ack_requested_elsewhere_is_applied_by_the_leader(
    cluster: Cluster, redis_client: aioredis.Redis
) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    cluster.signals.update({sig.QUEUE_WAIT_P95_MS_1M: 12_000, sig.UTILIZATION_5M: 0.95})
    assert await a.step()
    assert not await b.step()
    api = AlertStore(redis_client, cluster.keys)  # the API process: not a leader
    await api.request_ack(WAIT, "alice")
    assert a.engine.get(WAIT).acked_by is None  # nothing happens until the leader runs
    cluster.clock.now += 5
    assert await a.step()
    assert a.engine.get(WAIT).acked_by == "alice"
    assert (await api.pending_commands())[1] == 0
    history = await api.history(20)
    assert any(h.event == "acknowledged" and h.by == "alice" for h in history)
    # Saved with the state: a new leader knows about the ack.
    state = await api.load()
    assert state is not None and '"acked_by": "alice"' in state
    # Five hours later: the unacknowledged alert repeats, the acknowledged one does not.
    cluster.clock.now += 5 * 3600
    assert await a.step()
    assert ("repeat", UTIL) in a.channel.kinds
    assert ("repeat", WAIT) not in a.channel.kinds


async def test_silence_requested_elsewhere_holds_notifications(
    cluster: Cluster, redis_client: aioredis.Redis
) -> None:
    a = cluster.node("a")
    api = AlertStore(redis_client, cluster.keys)
    await api.request_silence(WAIT, time.time() + 3_600, "bob")  # before it even fires
    cluster.signals[sig.QUEUE_WAIT_P95_MS_1M] = 12_000
    assert await a.step()
    assert a.engine.get(WAIT).status == "firing"
    assert a.channel.kinds == []
    await api.request_unsilence(WAIT, "bob")
    cluster.clock.now += 5
    assert await a.step()
    assert a.channel.kinds == [("firing", WAIT)]


async def test_failing_signals_do_not_stop_the_leader(cluster: Cluster) -> None:
    a = cluster.node("a")
    calls = 0

    async def broken() -> Signals:
        nonlocal calls
        calls += 1
        raise RuntimeError("windows unavailable")

    a.evaluator.signals_source = broken
    assert await a.step()
    assert calls == 1 and a.evaluator.is_leader
    assert a.channel.kinds == []


async def test_run_loop_notifies_and_stop_releases_the_lease(cluster: Cluster) -> None:
    a = cluster.node("a", interval_s=0.02)
    cluster.signals[sig.QUEUE_WAIT_P95_MS_1M] = 12_000
    task = asyncio.create_task(a.evaluator.run())
    await a.channel.wait_for(1)
    assert a.channel.kinds == [("firing", WAIT)]
    assert await a.lease.holder() == "a"
    await a.evaluator.stop()
    await asyncio.wait_for(task, 2.0)
    assert await a.lease.holder() is None
    assert not a.evaluator.is_leader


def test_interval_must_be_shorter_than_the_lease(redis_client: aioredis.Redis) -> None:
    keys = QueueKeys("q")
    settings = load_alert_settings({})
    engine = AlertEngine(default_rules(settings), settings, "q")
    lease = LeaderLease(redis_client, "k", "me", 1_000)

    async def nothing() -> Signals:
        return {}

    with pytest.raises(ValueError, match="lease"):
        AlertEvaluator(redis_client, keys, engine, None, Dispatcher([]), lease, nothing, 1.0)
