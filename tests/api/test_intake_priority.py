"""A message's class comes from its conversation's priority in Chatwoot (the `priority` of
the conversation's webhook_data, Conversations::EventDataPresenter#push_data): urgent and
high keep theirs, medium is `normal`, low is `low`, none is `normal`;
SLUICE_PRIORITY_FROM_CHATWOOT=false gives every message `normal`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from sluice.chatwoot.payloads import classify
from sluice.queue.queue import Queue
from sluice.service.priorities import class_for

from ..integration.conftest import delete_queue_keys
from .conftest import start_api
from .test_intake import SECRET, Hook, fixture


def with_priority(message_id: int, priority: object) -> bytes:
    payload = json.loads(fixture("01"))
    payload["id"] = message_id
    payload["conversation"]["priority"] = priority
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("chatwoot", "sluice"),
    [
        ("urgent", "urgent"),
        ("high", "high"),
        ("medium", "normal"),
        ("low", "low"),
        (None, "normal"),
    ],
)
def test_chatwoot_priorities_map_to_classes(chatwoot: str | None, sluice: str) -> None:
    assert class_for(chatwoot) == sluice
    assert class_for(chatwoot, enabled=False) == "normal"


@pytest.mark.parametrize("value", ["critical", 3, "", None])
def test_a_priority_chatwoot_does_not_have_is_no_priority(value: object) -> None:
    event = classify(json.loads(with_priority(1, value)))
    assert getattr(event, "conversation_priority", "missing") is None


async def _hook(redis_url: str, redis_client: aioredis.Redis, queue: str, **env: str) -> Hook:
    server, url = await start_api(redis_url, queue, CHATWOOT_WEBHOOK_SECRET=SECRET, **env)
    hook = Hook(httpx.AsyncClient(base_url=url, timeout=10), Queue(queue, redis=redis_client))
    hook.server = server  # type: ignore[attr-defined]
    return hook


@pytest.fixture
async def hooks(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> AsyncIterator[list[Hook]]:
    made: list[Hook] = []
    yield made
    for hook in made:
        await hook.client.aclose()
        await hook.server.stop()  # type: ignore[attr-defined]
    await delete_queue_keys(redis_client, queue_name)
    await delete_queue_keys(redis_client, queue_name + "-off")


async def test_the_class_follows_the_conversations_priority(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str, hooks: list[Hook]
) -> None:
    hook = await _hook(redis_url, redis_client, queue_name)
    hooks.append(hook)
    for message_id, priority, expected in [
        (7001, "urgent", "urgent"),
        (7002, "medium", "normal"),
        (7003, "low", "low"),
        (7004, None, "normal"),
    ]:
        answer = (await hook.post(with_priority(message_id, priority))).json()
        assert answer["status"] == "queued", answer
        job = await hook.queue.get_job(answer["job_id"])
        assert job is not None and job.priority == expected, (priority, job)


async def test_switched_off_every_message_is_normal(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str, hooks: list[Hook]
) -> None:
    off = queue_name + "-off"
    hook = await _hook(redis_url, redis_client, off, SLUICE_PRIORITY_FROM_CHATWOOT="false")
    hooks.append(hook)
    answer = (await hook.post(with_priority(7101, "urgent"))).json()
    job = await hook.queue.get_job(answer["job_id"])
    assert job is not None and job.priority == "normal"
