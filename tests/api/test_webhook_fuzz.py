"""The webhook endpoint under structure-aware fuzzing: fixtures with fields replaced by
arbitrary JSON, removed, or the body cut or garbled. Never a 5xx, never a crash, and
nothing but a well-formed incoming message is ever queued."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.queue.queue import Queue

from ..fixtures import CHATWOOT
from ..integration.conftest import delete_queue_keys
from .conftest import start_api

FIXTURES = [json.loads(p.read_text()) for p in sorted(CHATWOOT.glob("*.json"))]
ALLOWED = {200, 400, 413, 415, 422}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def mutate(doc: Any, path: tuple[Any, ...], new: Any, delete: bool) -> Any:
    doc = json.loads(json.dumps(doc))
    target = doc
    for step in path[:-1]:
        target = target[step]
    if delete and isinstance(target, dict):
        target.pop(path[-1], None)
    else:
        target[path[-1]] = new
    return doc


@pytest.fixture
async def endpoint(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Queue]]:
    server, url = await start_api(redis_url, queue_name)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        try:
            yield client, Queue(queue_name, redis=redis_client)
        finally:
            await server.stop()
            await delete_queue_keys(redis_client, queue_name)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_mutated_fixtures_never_5xx(
    endpoint: tuple[httpx.AsyncClient, Queue], data: st.DataObject
) -> None:
    client, queue = endpoint
    doc = data.draw(st.sampled_from(FIXTURES))
    path = data.draw(st.sampled_from(paths(doc)))
    new = data.draw(json_values)
    mutated = mutate(doc, path, new, data.draw(st.booleans()))
    raw = json.dumps(mutated).encode()
    cut = data.draw(st.sampled_from([None, "truncate", "garble"]))
    if cut == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    elif cut == "garble":
        at = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([data.draw(st.integers(0, 255))]) + raw[at + 1 :]
    response = await client.post(
        "/webhooks/chatwoot", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in ALLOWED, (response.status_code, response.text[:300])
    if response.status_code == 200 and response.json().get("status") == "queued":
        job = await queue.get_job(response.json()["job_id"])
        assert job is not None and isinstance(job.payload["message_id"], int)
