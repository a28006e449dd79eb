"""Alert state, history and operator commands in a real Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from sluice.alerts import AlertEngine, HistoryEntry
from sluice.alerts.config import AlertSettings, load_alert_settings
from sluice.alerts.rules import default_rules
from sluice.alerts.store import AlertCommand, AlertStore
from sluice.keys import QueueKeys
from sluice.monitor import signals as sig
from sluice.monitor.leader import LeaderLease

WAIT = "queue_wait_high"


@pytest.fixture
def settings() -> AlertSettings:
    return load_alert_settings({"SLUICE_ALERT_FOR_S": "0"})


@pytest.fixture
async def store(redis_client: aioredis.Redis, queue_name: str) -> AsyncIterator[AlertStore]:
    keys = QueueKeys(queue_name)
    yield AlertStore(redis_client, keys)
    found = [k async for k in redis_client.scan_iter(match=f"sluice:{{{queue_name}}}:*")]
    if found:
        await redis_client.delete(*found)


def engine_for(settings: AlertSettings, queue_name: str) -> AlertEngine:
    return AlertEngine(default_rules(settings), settings, queue_name)


def entry(n: int, queue: str) -> HistoryEntry:
    return HistoryEntry(float(n), "fp", WAIT, queue, "firing", "firing", "warning", float(n))


async def test_state_round_trip(
    store: AlertStore, settings: AlertSettings, queue_name: str
) -> None:
    assert await store.load() is None
    engine = engine_for(settings, queue_name)
    engine.evaluate({sig.QUEUE_WAIT_P95_MS_1M: 12_000}, 100.0)
    engine.ack(WAIT, "alice", 101.0)
    await store.save(engine)
    text = await store.load()
    assert text is not None
    other = engine_for(settings, queue_name)
    other.restore(text)
    assert other.alerts() == engine.alerts()
    assert other.get(WAIT).status == "firing" and other.get(WAIT).acked_by == "alice"


async def test_every_key_lives_under_the_queue_prefix(
    store: AlertStore, settings: AlertSettings, queue_name: str, redis_client: aioredis.Redis
) -> None:
    engine = engine_for(settings, queue_name)
    engine.evaluate({sig.QUEUE_WAIT_P95_MS_1M: 12_000}, 100.0)
    await store.commit(engine, engine.take_history())
    await store.request_ack(WAIT, "alice")
    keys = {k.decode() async for k in redis_client.scan_iter(match=f"*{queue_name}*")}
    prefix = QueueKeys(queue_name).prefix
    assert keys == {prefix + "alerts:state", prefix + "alerts:history", prefix + "alerts:commands"}


async def test_history_newest_first_with_limit(store: AlertStore, queue_name: str) -> None:
    await store.record([entry(n, queue_name) for n in range(5)])
    await store.record([])
    history = await store.history(limit=3)
    assert [h.at for h in history] == [4.0, 3.0, 2.0]
    assert history[0] == entry(4, queue_name)


async def test_history_is_capped(
    store: AlertStore, queue_name: str, redis_client: aioredis.Redis
) -> None:
    for start in range(0, 3_000, 500):
        await store.record([entry(n, queue_name) for n in range(start, start + 500)])
    length = await redis_client.xlen(store.history_key)
    assert 1_000 <= length < 1_200  # MAXLEN ~ 1000 trims whole nodes
    assert (await store.history(limit=1))[0].at == 2_999.0


async def test_commands_are_queued_in_order_and_removed_with_the_commit(
    store: AlertStore, settings: AlertSettings, queue_name: str
) -> None:
    until = time.time() + 600
    await store.request_ack("fp1", "alice")
    await store.request_silence(WAIT, until, "bob")
    commands, consumed = await store.pending_commands()
    assert consumed == 2
    assert [(c.op, c.target, c.by) for c in commands] == [
        ("ack", "fp1", "alice"),
        ("silence", WAIT, "bob"),
    ]
    assert commands[1].until == until
    await store.request_unsilence(WAIT, "carol")  # arrives while the leader works
    await store.commit(engine_for(settings, queue_name), (), consumed)
    left, consumed = await store.pending_commands()
    assert [(c.op, c.by) for c in left] == [("unsilence", "carol")]
    assert consumed == 1


async def test_unreadable_commands_are_skipped_but_consumed(
    store: AlertStore, settings: AlertSettings, queue_name: str, redis_client: aioredis.Redis
) -> None:
    await redis_client.rpush(store.commands_key, b"{not json", b'{"op": "explode"}')
    await store.request_ack(WAIT, "alice")
    commands, consumed = await store.pending_commands()
    assert [c.op for c in commands] == ["ack"]
    assert consumed == 3
    await store.commit(engine_for(settings, queue_name), (), consumed)
    assert await redis_client.llen(store.commands_key) == 0


async def test_command_list_is_bounded(
    redis_client: aioredis.Redis, queue_name: str, store: AlertStore
) -> None:
    small = AlertStore(redis_client, QueueKeys(queue_name), commands_cap=3)
    for n in range(5):
        await small.request_ack(f"fp{n}", "alice")
    commands, _ = await small.pending_commands()
    assert [c.target for c in commands] == ["fp2", "fp3", "fp4"]  # the newest kept


async def test_requests_are_validated(store: AlertStore) -> None:
    with pytest.raises(ValueError):
        await store.request_silence(WAIT, time.time() - 1, "bob")
    with pytest.raises(ValueError):
        await store.request_silence(WAIT, float("inf"), "bob")
    with pytest.raises(ValueError):
        await store.request_ack(WAIT, "")


async def test_commit_is_fenced_by_the_lease(
    store: AlertStore, settings: AlertSettings, queue_name: str, redis_client: aioredis.Redis
) -> None:
    mine = LeaderLease(redis_client, store.lease_key, "me", 60_000)
    theirs = LeaderLease(redis_client, store.lease_key, "them", 60_000)
    engine = engine_for(settings, queue_name)
    engine.evaluate({sig.QUEUE_WAIT_P95_MS_1M: 12_000}, 100.0)
    assert await theirs.acquire()
    assert not await store.commit(engine, engine.take_history(), fence=mine)
    assert await store.load() is None
    assert await redis_client.exists(store.history_key) == 0
    await theirs.release()
    assert await mine.acquire()
    assert await store.commit(engine, [], fence=mine)
    assert await store.load() == engine.state_to_json()


def test_command_json_round_trip() -> None:
    command = AlertCommand("silence", "fp", "bob", 1.5, 99.0)
    assert AlertCommand.from_json(command.to_json()) == command
    with pytest.raises(ValueError):
        AlertCommand.from_json('{"op": "delete", "target": "x", "by": "y", "requested_at": 1}')
