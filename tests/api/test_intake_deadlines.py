"""Deadlines from what was promised, through the real API over HTTP (issue 15 part 2).

Chatwoot-shaped ``message_created`` bodies (fixture 01, the conversation's fields as
``Conversations::EventDataPresenter#push_data`` and, with the enterprise ``sla`` feature,
``applied_sla`` as ``AppliedSla#push_event_data``) go through a served Sluice into Redis;
the test reads the job's deadline back where the engine keeps it (the job hash, the ready
set), its note ``deadline`` (the source), the event stream and /metrics.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from sluice.queue.queue import Queue
from sluice.service.conversations import Conversations

from ..integration.conftest import delete_queue_keys
from .conftest import TOKEN, start_api
from .test_intake import SECRET, Hook, fixture

ON = {"SLUICE_DEADLINE_FROM_WAITING_SINCE": "true", "SLUICE_DEADLINE_FROM_SLA": "true"}
SLACK_MS = 1_500  # whole-second Chatwoot timestamps and a loaded machine


def message(
    message_id: int,
    conversation: int,
    *,
    ago_s: float = 0.0,
    waiting_since_ago_s: float | None = None,
    **conversation_fields: Any,
) -> bytes:
    """A customer's line written ``ago_s`` before now, in conversation ``conversation``."""
    payload = json.loads(fixture("01"))
    now = time.time()
    payload["id"] = message_id
    payload["created_at"] = datetime.fromtimestamp(now - ago_s, tz=UTC).isoformat()
    conv = payload["conversation"]
    conv["id"] = conversation
    conv["messages"] = []
    conv["first_reply_created_at"] = None
    conv["created_at"] = int(now - 3600)
    # waiting_since.to_i: whole seconds, 0 when nil.
    conv["waiting_since"] = 0 if waiting_since_ago_s is None else int(now - waiting_since_ago_s)
    conv.update(conversation_fields)
    return json.dumps(payload).encode()


async def job_deadline(queue: Queue, job_id: str) -> tuple[float, float, dict[str, str]]:
    """(deadline - enqueued) in ms, the deadline in the ready set, and the job's notes."""
    record = await queue.get_job(job_id)
    assert record is not None and record.deadline_ms is not None, record
    score = await queue.redis.zscore(queue.keys.ready, record.key)
    assert score == record.deadline_ms
    return record.deadline_ms - record.hops["enqueued"], score, record.notes


@pytest.fixture
async def served(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str, tmp_path: Path
) -> AsyncIterator[Any]:
    made: list[tuple[Any, httpx.AsyncClient, str]] = []

    async def serve(suffix: str = "", **env: str) -> Hook:
        name = queue_name + suffix
        server, url = await start_api(redis_url, name, CHATWOOT_WEBHOOK_SECRET=SECRET, **env)
        client = httpx.AsyncClient(base_url=url, timeout=10)
        made.append((server, client, name))
        hook = Hook(client, Queue(name, redis=redis_client))
        hook.url = url  # type: ignore[attr-defined]
        return hook

    yield serve
    for server, client, name in made:
        await client.aclose()
        await server.stop()
        await delete_queue_keys(redis_client, name)


async def queued(hook: Hook, body: bytes) -> str:
    answer = (await hook.post(body)).json()
    assert answer["status"] == "queued", answer
    return str(answer["job_id"])


async def test_an_out_of_order_burst_is_due_from_its_first_line(served: Any) -> None:
    """Chatwoot delivers webhooks with no order across jobs (docs/chatwoot-facts.md §11):
    the burst's third line may arrive first. Its customer has waited since the first line
    (waiting_since, 6 s ago), so the turn is due 4 s from now (normal: 10 s), not 10 s
    from this webhook; switched off, it is due 10 s after it is queued, as before."""
    on = await served(**ON)
    off = await served("-off")
    third = message(81003, 501, ago_s=0.0, waiting_since_ago_s=6)
    in_ms, _, notes = await job_deadline(on.queue, await queued(on, third))
    assert abs(in_ms - 4_000) < SLACK_MS, in_ms
    assert notes["deadline"] == "default"
    record = await on.queue.get_job(
        (await on.post(message(81001, 501, ago_s=6, waiting_since_ago_s=6))).json()["job_id"]
    )
    assert record is not None and record.deadline_ms is None  # behind the head in its lane
    off_ms, _, off_notes = await job_deadline(off.queue, await queued(off, third))
    assert abs(off_ms - 10_000) < 50, off_ms
    assert off_notes == {}  # switched off: nothing recorded, as before


async def test_a_stale_waiting_since_is_ignored_after_sluices_answer(
    served: Any, redis_client: aioredis.Redis
) -> None:
    """Before 4.16 a bot reply leaves waiting_since as it was; Sluice answered this
    conversation 5 s ago, so a waiting_since of 60 s ago names an answered line: the
    deadline counts from this message, and an event says why."""
    hook = await served(**ON)
    conversations = Conversations(redis_client, hook.queue.keys)
    await conversations.answered("7:502", time.time() * 1000 - 5000)
    job_id = await queued(hook, message(81101, 502, waiting_since_ago_s=60))
    in_ms, _, _ = await job_deadline(hook.queue, job_id)
    assert abs(in_ms - 10_000) < 50, in_ms
    events = await redis_client.xrange(hook.queue.keys.events)
    mine = [e for _, e in events if e[b"type"] == b"deadline" and e[b"job"] == job_id.encode()]
    assert mine and b"waiting_since ignored: before Sluice's last answer" in mine[0][b"info"]


async def test_an_applied_sla_sets_the_deadline(served: Any, redis_client: aioredis.Redis) -> None:
    """An SLA policy (enterprise feature) with a 3 s next response threshold, after a human
    reply: due 3 s after the customer's first unanswered line (1 s ago), so in 2 s, ahead
    of the normal class's 10 s. /metrics counts the source, the job's note names it."""
    hook = await served(**ON)
    applied = {
        "id": 11, "sla_id": 2, "sla_status": "active", "sla_name": "Gold",
        "sla_description": "", "sla_first_response_time_threshold": 60.0,
        "sla_next_response_time_threshold": 3.0, "sla_only_during_business_hours": False,
        "sla_resolution_time_threshold": None,
    }  # fmt: skip
    replied = datetime.fromtimestamp(time.time() - 30, tz=UTC).isoformat()
    body = message(81201, 503, waiting_since_ago_s=1, applied_sla=applied, sla_policy_id=2,
                   first_reply_created_at=replied)  # fmt: skip
    in_ms, _, notes = await job_deadline(hook.queue, await queued(hook, body))
    assert abs(in_ms - 2_000) < SLACK_MS, in_ms
    assert notes["deadline"] == "applied_sla:next_response"
    metrics = (await hook.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).text
    labels = f'queue="{hook.queue.name}",source="applied_sla:next_response"'
    line = f"sluice_deadline_source_total{{{labels}}} 1.0"
    assert line in metrics, [m for m in metrics.splitlines() if "deadline" in m]


async def test_a_rule_makes_a_vip_urgent(served: Any, tmp_path: Path) -> None:
    """The rules file matches the contact's custom attribute (meta.sender.custom_attributes,
    Contact#push_event_data): a VIP's low-priority conversation is urgent (2 s)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - name: vip\n    when:\n      contact: {tier: vip}\n    class: urgent\n",
        encoding="utf-8",
    )
    hook = await served(SLUICE_PRIORITY_RULES=str(rules))
    payload = json.loads(message(81301, 504, priority="low"))
    payload["conversation"]["meta"]["sender"]["custom_attributes"] = {"tier": "vip"}
    job_id = await queued(hook, json.dumps(payload).encode())
    record = await hook.queue.get_job(job_id)
    assert (
        record is not None
        and record.priority == "urgent"
        and record.notes["deadline"] == "rule:vip"
    )
    assert (
        record.deadline_ms is not None
        and abs(record.deadline_ms - record.hops["enqueued"] - 2000) < 50
    )
    other = await hook.queue.get_job(await queued(hook, message(81302, 505, priority="low")))
    assert other is not None and other.priority == "low" and other.notes["deadline"] == "priority"
