"""The fault proxy's lost and delayed replies, against the real Redis.

The Jepsen-style checker (tests/reliability/jepsen) trusts these switches to imitate a
request that took effect while its answer never arrived, and answers that arrive late; these
tests prove that is what they do before any scenario relies on it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from sluice.testing import FaultProxy


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[FaultProxy]:
    target = urlsplit(redis_url)
    async with FaultProxy(target.hostname or "127.0.0.1", target.port or 6379) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def key(redis_client: aioredis.Redis) -> str:
    return f"faultproxy-test:{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
async def cleanup(redis_client: aioredis.Redis, key: str) -> AsyncIterator[None]:
    yield
    await redis_client.delete(key)


def through(proxy: FaultProxy, redis_url: str, retries: int = 0) -> aioredis.Redis:
    """A client that reaches Redis through ``proxy``; ``retries`` = how often redis-py
    re-sends a command whose connection failed (0: the error reaches the caller)."""
    path = urlsplit(redis_url).path or "/0"
    return aioredis.Redis.from_url(
        f"redis://{proxy.url_host}{path}",
        socket_connect_timeout=1,
        socket_timeout=2,
        retry=Retry(NoBackoff(), retries),
    )


async def test_a_lost_reply_leaves_the_command_executed(
    proxy: FaultProxy, redis_url: str, redis_client: aioredis.Redis, key: str
) -> None:
    """The client sees a connection error; Redis ran the command anyway. The loss is used
    up: the next command (on a new connection) is answered."""
    client = through(proxy, redis_url)
    try:
        assert await client.ping()
        proxy.lose_replies(1)
        assert proxy.replies_to_lose == 1
        with pytest.raises(RedisConnectionError):
            await client.set(key, "executed")
        assert await redis_client.get(key) == b"executed"
        assert proxy.stats.replies_lost == 1 and proxy.replies_to_lose == 0
        assert await client.get(key) == b"executed"
    finally:
        await client.aclose()


async def test_losses_are_shared_by_all_links(
    proxy: FaultProxy, redis_url: str, redis_client: aioredis.Redis, key: str
) -> None:
    """``lose_replies(2)`` costs the next two answers, whichever connections carry them,
    and cuts each of those connections; a third answer gets through."""
    first, second = through(proxy, redis_url), through(proxy, redis_url)
    try:
        assert await first.ping() and await second.ping()
        assert proxy.connections == 2
        proxy.lose_replies(2)
        for client in (first, second):
            with pytest.raises(RedisConnectionError):
                await client.incr(key)
        assert await redis_client.get(key) == b"2"
        assert proxy.stats.replies_lost == 2
        assert await first.incr(key) == 3
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_retrying_client_executes_a_lost_command_twice(
    proxy: FaultProxy, redis_url: str, key: str
) -> None:
    """What the nemesis relies on: redis-py's retry re-sends a command whose answer was
    lost, so a non-idempotent command takes effect twice."""
    client = through(proxy, redis_url, retries=1)
    try:
        assert await client.ping()  # connected: the loss hits INCR, not the handshake
        proxy.lose_replies(1)
        assert await client.incr(key) == 2
    finally:
        await client.aclose()


async def test_zero_cancels_pending_losses(proxy: FaultProxy, redis_url: str) -> None:
    client = through(proxy, redis_url)
    try:
        proxy.lose_replies(3)
        proxy.lose_replies(0)
        assert await client.ping()
        assert proxy.stats.replies_lost == 0
    finally:
        await client.aclose()
    with pytest.raises(ValueError, match=">= 0"):
        proxy.lose_replies(-1)


async def test_delayed_replies_delay_only_the_answer(
    proxy: FaultProxy, redis_url: str, redis_client: aioredis.Redis, key: str
) -> None:
    """``set_latency(0, ms)``: the command reaches Redis at once (a BLPOP on the direct
    connection is woken by it), its answer arrives ``ms`` later."""
    client = through(proxy, redis_url)
    try:
        assert await client.ping()
        proxy.set_latency(0, 300)
        started = time.monotonic()
        push = asyncio.ensure_future(client.rpush(key, "x"))
        assert await redis_client.blpop([key], timeout=2) == (key.encode(), b"x")
        seen_s = time.monotonic() - started
        assert await push == 1
        answered_s = time.monotonic() - started
        assert seen_s < 0.25, "the request itself should not be delayed"
        assert answered_s >= 0.3
    finally:
        await client.aclose()
