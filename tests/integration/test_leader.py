"""The leader lease on a real Redis: one winner, takeover after the TTL, no stale renewals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from sluice.keys import QueueKeys
from sluice.monitor.leader import LEASE_SCRIPTS, LeaderLease, default_holder, lease_script_source

TTL_MS = 300


@pytest.fixture
async def lease_key(redis_client: aioredis.Redis, queue_name: str) -> AsyncIterator[str]:
    key = QueueKeys(queue_name).prefix + "alerts:leader"
    yield key
    await redis_client.delete(key)


async def acquire_within(lease: LeaderLease, seconds: float) -> float:
    """Poll ``acquire`` until it succeeds (bounded); returns when, by the monotonic clock."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await lease.acquire():
            return time.monotonic()
        await asyncio.sleep(0.01)
    raise AssertionError(f"{lease.holder_id} did not get the lease within {seconds} s")


async def test_two_leases_compete_and_exactly_one_wins(
    redis_client: aioredis.Redis, lease_key: str
) -> None:
    leases = [LeaderLease(redis_client, lease_key, f"p{n}", TTL_MS) for n in range(5)]
    results = await asyncio.gather(*(lease.acquire() for lease in leases))
    assert sum(results) == 1
    winner = leases[results.index(True)]
    assert await winner.holder() == winner.holder_id
    assert winner.held
    assert [lease.held for lease in leases].count(True) == 1
    # Acquiring again is a renewal for the winner and still a refusal for the others.
    assert await winner.acquire()
    for lease in leases:
        if lease is not winner:
            assert not await lease.acquire()
            assert not await lease.renew()


async def test_takeover_after_the_leader_stops_renewing(
    redis_client: aioredis.Redis, lease_key: str
) -> None:
    leader = LeaderLease(redis_client, lease_key, "leader", TTL_MS)
    follower = LeaderLease(redis_client, lease_key, "follower", TTL_MS)
    assert await leader.acquire()
    last_renewal = time.monotonic()
    assert not await follower.acquire()
    # The leader "dies": it never renews or releases again.
    took_over = await acquire_within(follower, 3.0)
    assert took_over - last_renewal >= TTL_MS / 1000 * 0.8  # not before the TTL ran out
    assert await follower.holder() == "follower"
    # The stale leader cannot renew, release or re-acquire the new leader's lease.
    assert not await leader.renew()
    assert not leader.held
    assert not await leader.release()
    assert not await leader.acquire()
    assert await redis_client.get(lease_key) == b"follower"


async def test_release_hands_over_at_once(redis_client: aioredis.Redis, lease_key: str) -> None:
    a = LeaderLease(redis_client, lease_key, "a", 60_000)
    b = LeaderLease(redis_client, lease_key, "b", 60_000)
    assert await a.acquire()
    assert not await b.acquire()
    assert await a.release()
    assert not a.held
    assert await a.holder() is None
    assert await b.acquire()


async def test_renew_keeps_the_lease_alive_and_never_takes_a_free_one(
    redis_client: aioredis.Redis, lease_key: str
) -> None:
    lease = LeaderLease(redis_client, lease_key, "a", TTL_MS)
    assert not await lease.renew()
    assert await redis_client.exists(lease_key) == 0
    assert await lease.acquire()
    await redis_client.pexpire(lease_key, 50)
    assert await lease.renew()
    assert await redis_client.pttl(lease_key) > 100  # renewed to the full TTL


async def test_held_is_set_from_the_time_before_the_request(
    redis_client: aioredis.Redis, lease_key: str
) -> None:
    """A leader stops acting when its TTL ran out by its own clock, before asking Redis;
    the TTL counts from before the request, so the local view ends first."""
    now = [10.0]

    def clock() -> float:
        return now[0]

    lease = LeaderLease(redis_client, lease_key, "me", TTL_MS, clock=clock)
    assert await lease.acquire()  # started at t=10
    now[0] = 10.0 + TTL_MS / 1000 - 0.001
    assert lease.held
    now[0] = 10.0 + TTL_MS / 1000
    assert not lease.held


def test_scripts_document_keys_and_argv() -> None:
    for name in LEASE_SCRIPTS:
        header = lease_script_source(name).split("\n\n", 1)[0]
        assert header.startswith(f"-- {name}.lua:")
        assert "-- KEYS:" in header and "-- ARGV:" in header and "Returns" in header


def test_default_holders_differ_within_one_process() -> None:
    assert default_holder() != default_holder()
