"""Fixtures for engine tests: a fresh queue per test on the real Redis, cleaned up after."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from sluice import Queue


async def delete_queue_keys(client: aioredis.Redis, name: str) -> None:
    """Test cleanup only: SCAN is fine here, never on a hot path."""
    pattern = f"sluice:{{{name}}}:*"
    batch: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await client.delete(*batch)
            batch.clear()
    if batch:
        await client.delete(*batch)


@pytest.fixture
async def queue(redis_client: aioredis.Redis, queue_name: str) -> AsyncIterator[Queue]:
    q = Queue(queue_name, redis=redis_client, max_attempts=3)
    try:
        yield q
    finally:
        await delete_queue_keys(redis_client, queue_name)
