"""The API served by uvicorn on a real loopback port, against the real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import redis.asyncio as aioredis

from sluice.api.factory import create_app
from sluice.api.server import ApiServer
from sluice.queue.queue import Queue
from sluice.settings.config import load_settings

from ..integration.conftest import delete_queue_keys

TOKEN = "test-admin-token-0123456789"


@dataclass
class Api:
    url: str
    client: httpx.AsyncClient  # sends the admin token
    anonymous: httpx.AsyncClient
    queue: Queue


async def start_api(redis_url: str, queue_name: str, **env: str) -> tuple[ApiServer, str]:
    settings = load_settings(
        {"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name, "SLUICE_ADMIN_TOKEN": TOKEN, **env}
    )
    server = ApiServer(create_app(settings, redis_url), "127.0.0.1", 0)
    return server, await server.start()


@pytest.fixture
async def api(redis_url: str, redis_client: aioredis.Redis, queue_name: str) -> AsyncIterator[Api]:
    server, url = await start_api(redis_url, queue_name)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client,
        httpx.AsyncClient(base_url=url, timeout=10) as anonymous,
    ):
        try:
            yield Api(url, client, anonymous, Queue(queue_name, redis=redis_client))
        finally:
            await server.stop()
            await delete_queue_keys(redis_client, queue_name)
