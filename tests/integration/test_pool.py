"""The process pool against a real Redis: warm-up, hard cap, bounded wait, metrics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from sluice.redis.pool import (
    MeteredConnectionPool,
    PoolExhaustedError,
    RedisHandle,
    RedisUnavailableError,
    connect,
    dedicated_client,
)


@pytest.fixture
def client_name() -> str:
    """A CLIENT SETNAME unique to the test, so CLIENT LIST counts only our connections."""
    return f"sluice-test-{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def handle_for(
    url: str,
    name: str,
    *,
    pool_enabled: bool = True,
    min_connections: int = 0,
    max_connections: int = 4,
    wait_timeout_s: float = 5.0,
) -> AsyncIterator[RedisHandle]:
    handle = await connect(
        url,
        pool_enabled=pool_enabled,
        min_connections=min_connections,
        max_connections=max_connections,
        wait_timeout_s=wait_timeout_s,
        client_name=name,
    )
    try:
        yield handle
    finally:
        await handle.close()


async def server_side_connections(observer: aioredis.Redis, name: str) -> int:
    clients = await observer.client_list()
    return sum(1 for client in clients if client.get("name") == name)


async def test_warm_opens_the_minimum_connections(
    redis_url: str, redis_client: aioredis.Redis, client_name: str
) -> None:
    async with handle_for(redis_url, client_name, min_connections=3, max_connections=6) as handle:
        metrics = handle.metrics()

        assert (metrics.opened, metrics.idle, metrics.in_use) == (3, 3, 0)
        assert metrics.max == 6
        assert await server_side_connections(redis_client, client_name) == 3


async def test_warm_is_idempotent(redis_url: str, client_name: str) -> None:
    async with handle_for(redis_url, client_name, min_connections=2, max_connections=4) as handle:
        assert await handle.pool.warm() == 2

        assert handle.metrics().opened == 2


async def test_callers_above_max_wait_and_the_cap_holds(
    redis_url: str, redis_client: aioredis.Redis, client_name: str, queue_name: str
) -> None:
    key = f"{queue_name}:pool-cap"
    callers = 12
    async with handle_for(redis_url, client_name, max_connections=3) as handle:
        try:
            # BLPOP on an empty list holds each connection ~50 ms on the server side, so the
            # 12 callers necessarily overlap on 3 connections.
            results = await asyncio.gather(
                *(handle.client.blpop([key], timeout=0.05) for _ in range(callers))
            )
            metrics = handle.metrics()
            connections = await server_side_connections(redis_client, client_name)
        finally:
            await redis_client.delete(key)

    assert results == [None] * callers
    assert metrics.waits >= callers - 3
    assert metrics.wait_time_seconds > 0
    assert metrics.in_use_peak == 3
    assert metrics.opened == 3
    assert (metrics.in_use, metrics.waiting) == (0, 0)
    assert connections == 3


async def test_exhausted_pool_gives_a_clear_error_after_the_bounded_wait(
    redis_url: str, client_name: str
) -> None:
    async with handle_for(redis_url, client_name, max_connections=1, wait_timeout_s=0.05) as handle:
        held = await handle.pool.get_connection()
        try:
            with pytest.raises(PoolExhaustedError) as caught:
                await handle.client.ping()
        finally:
            await handle.pool.release(held)
        metrics = handle.metrics()

        assert isinstance(caught.value, RedisConnectionError)
        message = str(caught.value)
        assert "all 1 connections" in message
        assert "REDIS_POOL_MAX_CONNECTIONS" in message
        assert "REDIS_POOL_TIMEOUT_S" in message
        assert (metrics.exhausted, metrics.waits, metrics.waiting) == (1, 1, 0)
        assert metrics.wait_time_seconds >= 0.05
        assert await handle.client.ping() is True  # the pool recovers once released


async def test_disabled_pool_uses_exactly_one_connection(
    redis_url: str, redis_client: aioredis.Redis, client_name: str, queue_name: str
) -> None:
    key = f"{queue_name}:single"
    async with handle_for(
        redis_url, client_name, pool_enabled=False, min_connections=5, max_connections=20
    ) as handle:
        try:
            await asyncio.gather(*(handle.client.incr(key) for _ in range(8)))
            value = await handle.client.get(key)
            metrics = handle.metrics()
            connections = await server_side_connections(redis_client, client_name)
        finally:
            await redis_client.delete(key)

    assert value == b"8"
    assert (metrics.max, metrics.opened, metrics.in_use_peak) == (1, 1, 1)
    assert metrics.waits > 0  # callers queued for the one connection instead of opening more
    assert connections == 1


async def test_dedicated_client_never_uses_the_pool(
    redis_url: str, client_name: str, queue_name: str
) -> None:
    key = f"{queue_name}:wake"
    async with handle_for(redis_url, client_name, max_connections=1) as handle:
        blocking = dedicated_client(redis_url, client_name=f"{client_name}-blocking")
        try:
            pool_id = await handle.client.client_id()
            blocking_id = await blocking.client_id()
            assert blocking_id != pool_id
            assert await blocking.client_id() == blocking_id  # one private connection

            held = await handle.pool.get_connection()  # the pool's only connection is busy
            try:
                assert await blocking.ping() is True
                assert handle.metrics().in_use == 1
            finally:
                await handle.pool.release(held)

            async def wait_for_job() -> object:
                return await blocking.blpop([key], timeout=5)

            waiter = asyncio.create_task(wait_for_job())
            await handle.client.rpush(key, b"job-1")
            popped = await waiter
            assert isinstance(popped, (list, tuple))
            assert tuple(popped) == (key.encode(), b"job-1")
            assert handle.metrics().opened == 1
        finally:
            await blocking.delete(key)
            await blocking.aclose()


async def test_unreachable_redis_fails_at_connect_with_a_masked_url() -> None:
    with pytest.raises(RedisUnavailableError) as caught:
        await connect(
            "redis://:hunter2@127.0.0.1:1/0",
            pool_enabled=True,
            min_connections=1,
            max_connections=2,
            wait_timeout_s=1,
        )

    assert "127.0.0.1:1" in str(caught.value)
    assert "hunter2" not in str(caught.value)


async def test_connection_errors_are_counted(tmp_path: object) -> None:
    pool = MeteredConnectionPool.from_url(
        f"unix://{tmp_path}/no-server.sock", max_connections=2, timeout=1, min_connections=1
    )
    try:
        with pytest.raises(RedisConnectionError):
            await pool.warm()
        assert pool.metrics().errors >= 1
    finally:
        await pool.aclose()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections": 2, "min_connections": 3}, "min_connections"),
        ({"max_connections": 2, "timeout": 0}, "timeout"),
    ],
)
def test_pool_rejects_unbounded_or_inconsistent_limits(
    kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        MeteredConnectionPool(**kwargs)


async def test_metrics_as_dict_has_every_field(redis_url: str, client_name: str) -> None:
    async with handle_for(redis_url, client_name, min_connections=1) as handle:
        snapshot = handle.metrics().as_dict()

    assert set(snapshot) == {
        "max",
        "in_use",
        "idle",
        "opened",
        "waits",
        "wait_time_seconds",
        "errors",
        "exhausted",
        "waiting",
        "in_use_peak",
    }
    assert snapshot["opened"] == 1
