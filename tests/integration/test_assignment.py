"""Broker assignment against a real Redis: sticky, least-loaded, capacity, round-robin."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import pytest
import redis.asyncio as aioredis

from sluice.broker.assignment import Assigner, Assignment
from sluice.broker.config import Broker, BrokerKind
from sluice.keys import QueueKeys
from sluice.service.conversations import Conversations
from tests.integration.conftest import delete_queue_keys


def ai(name: str, capacity: int) -> Broker:
    return Broker(name=name, kind="ai", capacity=capacity)


def human(name: str, capacity: int, agent_id: int) -> Broker:
    return Broker(name=name, kind="human", agent_id=agent_id, capacity=capacity)


class MakeAssigner(Protocol):
    def __call__(
        self, brokers: Sequence[Broker], available: set[str] | None = None
    ) -> Assigner: ...


@pytest.fixture
async def make(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> AsyncIterator[MakeAssigner]:
    keys = QueueKeys(queue_name)

    # 200 concurrent callers share a bounded pool that makes them wait for a connection
    # (as Sluice's own pool does); redis-py's default pool would refuse the 101st instead.
    pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=32, timeout=10)
    client = aioredis.Redis(connection_pool=pool)

    def factory(brokers: Sequence[Broker], available: set[str] | None = None) -> Assigner:
        async def online() -> set[str]:
            assert available is not None
            return set(available)

        return Assigner(client, keys, brokers, available=None if available is None else online)

    try:
        yield factory
    finally:
        await client.aclose()
        await pool.aclose()
        await delete_queue_keys(redis_client, queue_name)


async def test_keys_live_under_the_queue_prefix(make: MakeAssigner, queue_name: str) -> None:
    assigner = make([ai("a", 2)])
    prefix = f"sluice:{{{queue_name}}}:"
    for key in (assigner.assignments_key, assigner.loads_key, assigner.rr_key):
        assert key.startswith(prefix + "broker:")


async def test_sticky(make: MakeAssigner) -> None:
    assigner = make([ai("a", 10), ai("b", 10)])
    first = await assigner.assign_detailed("1:1")
    assert first.rule == "least_loaded" and first.changed
    for _ in range(5):
        again = await assigner.assign_detailed("1:1")
        assert again.broker == first.broker and again.rule == "sticky" and not again.changed
    assert await assigner.loads() == {"a": 1, "b": 0}
    assert await assigner.assignment("1:1") == "a"
    assert await assigner.assignment("1:2") is None


async def test_least_loaded_spreads_conversations(make: MakeAssigner) -> None:
    assigner = make([ai("a", 10), ai("b", 10), ai("c", 10)])
    names = [(await assigner.assign(f"c{i}")).name for i in range(6)]
    assert names == ["a", "b", "c", "a", "b", "c"]  # ties go to configuration order
    await assigner.release("c1")  # b now holds the fewest
    assert (await assigner.assign("new")).name == "b"


async def test_capacity_respected_then_round_robin(make: MakeAssigner) -> None:
    assigner = make([ai("small", 1), ai("big", 3)])
    first = [await assigner.assign_detailed(f"k{i}") for i in range(4)]
    assert [a.rule for a in first] == ["least_loaded"] * 4
    assert await assigner.loads() == {"small": 1, "big": 3}
    # Everyone is full: round-robin over capacity, never unassigned.
    over = [await assigner.assign_detailed(f"o{i}") for i in range(4)]
    assert [a.rule for a in over] == ["round_robin"] * 4
    assert [a.broker.name for a in over] == ["small", "big", "small", "big"]
    assert await assigner.loads() == {"small": 3, "big": 5}


async def test_unavailable_brokers_are_skipped(make: MakeAssigner) -> None:
    online = {"b"}
    assigner = make([ai("a", 10), ai("b", 10)], available=online)
    assert {(await assigner.assign(f"k{i}")).name for i in range(3)} == {"b"}
    online.clear()  # nobody available: still assigned, flagged as degraded
    degraded = await assigner.assign_detailed("late")
    assert degraded.degraded and degraded.broker.name == "a"
    online.add("b")  # sticky even if "a" is offline: the conversation stays with its broker
    assert (await assigner.assign("late")).name == "a"


async def test_unavailable_and_full_round_robin_only_over_available(make: MakeAssigner) -> None:
    assigner = make([ai("a", 1), ai("b", 1), ai("c", 1)], available={"a", "b"})
    await assigner.assign("x1")
    await assigner.assign("x2")
    names = [(await assigner.assign(f"y{i}")).name for i in range(4)]
    assert set(names) == {"a", "b"} and Counter(names) == {"a": 2, "b": 2}


async def test_release_frees_capacity(make: MakeAssigner) -> None:
    assigner = make([ai("a", 1), ai("b", 1)])
    assert (await assigner.assign("k1")).name == "a"
    assert (await assigner.assign("k2")).name == "b"
    assert await assigner.release("k1") == "a"
    assert await assigner.release("k1") is None  # idempotent
    assert await assigner.loads() == {"a": 0, "b": 1}
    third = await assigner.assign_detailed("k3")
    assert third.broker.name == "a" and third.rule == "least_loaded"


async def test_removed_broker_loses_its_conversations(make: MakeAssigner) -> None:
    old = make([ai("gone", 5), ai("stays", 5)])
    assert (await old.assign("k")).name == "gone"
    new = make([ai("stays", 5), ai("other", 5)])
    moved = await new.assign_detailed("k")
    assert moved.broker.name == "stays" and moved.previous == "gone" and moved.changed
    assert await new.loads() == {"stays": 1, "other": 0}
    raw = await new.redis.hgetall(new.loads_key)
    assert b"gone" not in raw  # the old broker's unit of load was freed


async def test_concurrent_assigns_never_exceed_capacity_while_it_remains(
    make: MakeAssigner,
) -> None:
    brokers = [ai("a", 50), ai("b", 50), ai("c", 50)]
    assigner = make(brokers)
    results = await asyncio.gather(*(assigner.assign_detailed(f"k{i}") for i in range(200)))
    rules = Counter(r.rule for r in results)
    assert rules == {"least_loaded": 150, "round_robin": 50}
    filled = Counter(r.broker.name for r in results if r.rule == "least_loaded")
    assert filled == {"a": 50, "b": 50, "c": 50}  # exactly full before anyone goes over
    loads = await assigner.loads()
    assert sum(loads.values()) == 200
    assert sorted(loads.values()) == [66, 67, 67]  # round-robin shares the overflow
    assert loads == Counter(r.broker.name for r in results)


async def test_concurrent_assigns_with_room_for_all(make: MakeAssigner) -> None:
    assigner = make([ai("a", 80), ai("b", 80), ai("c", 80)])
    # 200 calls for 120 conversations (some repeated, as bursts are): stickiness holds.
    keys = [f"k{i % 120}" for i in range(200)]
    results = await asyncio.gather(*(assigner.assign(k) for k in keys))
    by_key: dict[str, set[str]] = {}
    for key, broker in zip(keys, results, strict=True):
        by_key.setdefault(key, set()).add(broker.name)
    assert all(len(names) == 1 for names in by_key.values())
    loads = await assigner.loads()
    assert sum(loads.values()) == 120
    assert all(load <= 80 for load in loads.values())
    assert max(loads.values()) - min(loads.values()) <= 1  # least-loaded balances


async def detailed(assigner: Assigner, key: str, kind: BrokerKind) -> Assignment:
    """A kind-filtered assignment that must exist (brokers of that kind are configured)."""
    found = await assigner.assign_detailed(key, kind=kind)
    assert found is not None
    return found


async def test_handoff_to_humans(make: MakeAssigner) -> None:
    assigner = make(
        [ai("bot", 100), human("alice", 1, 11), human("bob", 2, 12)],
        available={"bot", "alice", "bob"},
    )
    assert (await assigner.assign("k1")).name == "bot"
    handed = await detailed(assigner, "k1", "human")
    assert handed.broker.name == "alice" and handed.previous == "bot" and handed.changed
    assert handed.broker.agent_id == 11
    assert await assigner.loads() == {"bot": 0, "alice": 1, "bob": 0}
    # A conversation already with a human stays with that human.
    assert (await detailed(assigner, "k1", "human")).broker.name == "alice"
    assert (await assigner.assign("k1")).name == "alice"
    # Alice is full: the next handoff goes to bob, never to the bot.
    assert (await detailed(assigner, "k2", "human")).broker.name == "bob"
    assert (await detailed(assigner, "k3", "human")).broker.name == "bob"
    over = await detailed(assigner, "k4", "human")
    assert over.broker.kind == "human" and over.rule == "round_robin"
    # Back to the bot (an agent returned the conversation to pending).
    assert (await detailed(assigner, "k1", "ai")).broker.name == "bot"


async def test_reassign_to_a_named_broker(make: MakeAssigner) -> None:
    assigner = make([ai("bot", 100), human("alice", 1, 11), human("bob", 1, 12)])
    await assigner.assign("k")
    assert (await assigner.reassign("k", "bob")).name == "bob"
    assert await assigner.assignment("k") == "bob"
    assert await assigner.loads() == {"bot": 0, "alice": 0, "bob": 1}
    with pytest.raises(KeyError):
        await assigner.reassign("k", "nobody")


async def test_no_broker_of_the_kind(make: MakeAssigner) -> None:
    assigner = make([ai("bot", 5)])
    assert (await assigner.assign("k")).name == "bot"
    # No human configured: None (the caller falls back), the assignment is left alone.
    assert await assigner.assign("k", kind="human") is None
    assert await assigner.assign_detailed("new", kind="human") is None
    assert await assigner.assignment("k") == "bot"
    assert await assigner.assignment("new") is None
    assert await assigner.loads() == {"bot": 1}
    with pytest.raises(ValueError):
        await assigner.assign("")


# -- idle expiry: a conversation that is never resolved must not hold its broker for ever --

IDLE_S = 0.3  # the idle TTL of these tests; the real one is the conversation state's week


@pytest.fixture
def idle_keys(queue_name: str) -> QueueKeys:
    return QueueKeys(queue_name)


@pytest.fixture
async def idle_cleanup(redis_client: aioredis.Redis, queue_name: str) -> AsyncIterator[None]:
    yield
    await delete_queue_keys(redis_client, queue_name)


async def idle_past_ttl() -> None:
    """Sleep until everything touched before the call is idle for longer than IDLE_S (on
    Redis's clock, which the scripts read; both clocks tick at the same rate here)."""
    await asyncio.sleep(IDLE_S + 0.15)


@pytest.mark.usefixtures("idle_cleanup")
async def test_idle_conversations_stop_counting_toward_load(
    redis_client: aioredis.Redis, idle_keys: QueueKeys
) -> None:
    assigner = Assigner(redis_client, idle_keys, [ai("a", 2), ai("b", 2)], idle_ttl_s=IDLE_S)
    conversations = Conversations(redis_client, idle_keys, ttl_s=IDLE_S)
    for key in ("1:1", "1:2", "1:3"):
        await assigner.assign(key)
        await conversations.remember(key, "hello", "hi")  # a bot turn writes the history
    assert await assigner.loads() == {"a": 2, "b": 1}
    await idle_past_ttl()  # never resolved; the conversation state has expired meanwhile
    assert await assigner.loads() == {"a": 0, "b": 0}
    assert await assigner.assignment("1:1") is None
    assert await redis_client.hlen(assigner.assignments_key) == 0
    assert await redis_client.zcard(assigner.seen_key) == 0
    # A customer coming back after that is a new conversation for the brokers: load 1, not 2.
    back = await assigner.assign_detailed("1:1")
    assert back.rule == "least_loaded" and back.previous is None
    assert await assigner.loads() == {"a": 1, "b": 0}


@pytest.mark.usefixtures("idle_cleanup")
async def test_assign_forgets_idle_assignments_before_comparing_loads(
    redis_client: aioredis.Redis, idle_keys: QueueKeys
) -> None:
    """Without a call to loads(): the assignment itself sees the freed capacity, so a full
    broker whose conversations went quiet takes new ones instead of round robin."""
    assigner = Assigner(redis_client, idle_keys, [ai("only", 1)], idle_ttl_s=IDLE_S)
    assert (await assigner.assign_detailed("old")).rule == "least_loaded"
    await idle_past_ttl()
    fresh = await assigner.assign_detailed("new")
    assert fresh.rule == "least_loaded"  # not round_robin over capacity
    assert await redis_client.hgetall(assigner.loads_key) == {b"only": b"1"}


@pytest.mark.usefixtures("idle_cleanup")
async def test_live_conversations_keep_their_broker(
    redis_client: aioredis.Redis, idle_keys: QueueKeys
) -> None:
    """Alive = a turn within the TTL (sticky assign) or conversation state that has not
    expired (a human is handling it: status events refresh it, no turn assigns)."""
    assigner = Assigner(redis_client, idle_keys, [ai("a", 5)], idle_ttl_s=IDLE_S)
    await assigner.assign("talking")
    await assigner.assign("with-human")
    await Conversations(redis_client, idle_keys, ttl_s=30).human_took_over("with-human", 7, "x")
    for _ in range(4):  # longer than the TTL in total, a turn every IDLE_S / 2
        await asyncio.sleep(IDLE_S / 2)
        assert (await assigner.assign_detailed("talking")).rule == "sticky"
    assert await assigner.loads() == {"a": 2}
    assert await assigner.assignment("with-human") == "a"


@pytest.mark.usefixtures("idle_cleanup")
async def test_assignments_made_before_the_upgrade_expire_too(
    redis_client: aioredis.Redis, idle_keys: QueueKeys
) -> None:
    """An assignment written by the old scripts (no entry in broker:seen) is adopted, then
    ages like any other: the load it held is freed once it is idle past the TTL."""
    assigner = Assigner(redis_client, idle_keys, [ai("a", 5)], idle_ttl_s=IDLE_S)
    await redis_client.hset(assigner.assignments_key, "legacy", "a")
    await redis_client.hset(assigner.loads_key, "a", 1)
    assert await assigner.loads() == {"a": 1}
    await idle_past_ttl()
    assert await assigner.loads() == {"a": 0}
    assert await assigner.assignment("legacy") is None
