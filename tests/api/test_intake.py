"""POST /webhooks/chatwoot over real HTTP: every fixture with its expected effect,
signatures, duplicates, limits, and Redis down."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from sluice.chatwoot.signature import sign
from sluice.queue.queue import Queue

from ..fixtures import CHATWOOT
from ..integration.conftest import delete_queue_keys
from .conftest import start_api

FIXTURES = CHATWOOT
SECRET = "fictional-webhook-secret-0001"


def fixture(name: str) -> bytes:
    matches = sorted(FIXTURES.glob(f"{name}_*.json"))
    assert matches, f"fixture {name} not found in {FIXTURES}"
    return matches[0].read_bytes()


def signed(body: bytes, *, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if at is None else at)
    return {
        "Content-Type": "application/json",
        "X-Chatwoot-Timestamp": str(timestamp),
        "X-Chatwoot-Signature": sign(secret, timestamp, body),
    }


class Hook:
    def __init__(self, client: httpx.AsyncClient, queue: Queue) -> None:
        self.client = client
        self.queue = queue

    async def post(self, body: bytes, **headers: str) -> httpx.Response:
        return await self.client.post(
            "/webhooks/chatwoot", content=body, headers={**signed(body), **headers}
        )


@pytest.fixture
async def hook(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> AsyncIterator[Hook]:
    server, url = await start_api(redis_url, queue_name, CHATWOOT_WEBHOOK_SECRET=SECRET)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        try:
            yield Hook(client, Queue(queue_name, redis=redis_client))
        finally:
            await server.stop()
            await delete_queue_keys(redis_client, queue_name)


async def lane(queue: Queue, key: str) -> list[dict[str, object]]:
    ids = await queue.redis.lrange(queue.keys.lane(key), 0, -1)
    records = [await queue.get_job(i.decode()) for i in ids]
    return [r.payload for r in records if r is not None]


async def test_incoming_messages_are_queued_with_hops(hook: Hook) -> None:
    first = await hook.post(fixture("01"))
    assert first.status_code == 200 and first.json()["status"] == "queued"
    second = await hook.post(fixture("02"))
    assert second.json()["status"] == "queued"
    payloads = await lane(hook.queue, "7:418")
    assert [p["message_id"] for p in payloads] == [
        json.loads(fixture("01"))["id"],
        json.loads(fixture("02"))["id"],
    ]
    job = await hook.queue.get_job(first.json()["job_id"])
    assert job is not None
    created = json.loads(fixture("01"))["created_at"]
    assert job.hops["source_created"] > 1.7e12 and "received" in job.hops
    assert created.startswith("20")


async def test_attachment_without_text_is_queued(hook: Hook) -> None:
    response = await hook.post(fixture("05"))
    assert response.json()["status"] == "queued"
    payloads = await lane(hook.queue, "7:418")
    assert payloads[0]["content"] is None and payloads[0]["attachments"] >= 1


async def test_an_open_conversation_is_not_the_bots_by_default(hook: Hook) -> None:
    """In a bot inbox `open` means handed to humans (contract rule 4): fixture 09 is an open,
    unassigned conversation."""
    response = await hook.post(fixture("09"))
    assert response.json() == {"status": "ignored", "reason": "conversation open"}
    assert len(await lane(hook.queue, "11:418")) == 0


async def test_other_account_same_display_id_is_a_separate_conversation(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> None:
    """With CHATWOOT_ANSWER_OPEN (an inbox without an agent bot, where conversations start
    open) an unassigned open conversation is answered; the key is (account, display id)."""
    server, url = await start_api(
        redis_url, queue_name, CHATWOOT_WEBHOOK_SECRET=SECRET, CHATWOOT_ANSWER_OPEN="true"
    )
    queue = Queue(queue_name, redis=redis_client)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            hook = Hook(client, queue)
            await hook.post(fixture("01"))
            response = await hook.post(fixture("09"))
            assert response.json()["status"] == "queued"
            assert len(await lane(queue, "7:418")) == 1
            assert len(await lane(queue, "11:418")) == 1
    finally:
        await server.stop()
        await delete_queue_keys(redis_client, queue_name)


@pytest.mark.parametrize(("name", "reason"), [("04", "private"), ("10", "bot")])
async def test_notes_and_bot_echoes_are_ignored(hook: Hook, name: str, reason: str) -> None:
    response = await hook.post(fixture(name))
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert reason in response.json()["reason"]
    assert (await hook.queue.counts())["waiting"] == 0


async def test_human_takeover_cancels_and_silences_the_bot(hook: Hook) -> None:
    await hook.post(fixture("01"))
    takeover = await hook.post(fixture("03"))
    assert takeover.json() == {"status": "human_takeover", "cancelled": 1}
    later = await hook.post(fixture("02"))
    assert later.json()["status"] == "ignored"
    assert (await hook.queue.counts())["waiting"] == 0


async def test_conversation_created_and_resolved(hook: Hook) -> None:
    assert (await hook.post(fixture("06"))).json()["status"] == "conversation_created"
    await hook.post(fixture("01"))
    resolved = await hook.post(fixture("07"))
    assert resolved.json() == {"status": "conversation_resolved", "cancelled": 1}
    assert (await hook.queue.counts())["waiting"] == 0


async def test_payload_without_ids_is_422_logged_and_not_queued(hook: Hook) -> None:
    response = await hook.post(fixture("08"))
    assert response.status_code == 422
    assert "conversation" in response.json()["reason"]
    assert (await hook.queue.counts())["waiting"] == 0
    token = {"Authorization": "Bearer test-admin-token-0123456789"}
    rejected = (await hook.client.get("/api/admin/intake/rejected", headers=token)).json()
    assert len(rejected) == 1 and "conversation" in rejected[0]["reason"]


async def test_duplicate_message_and_delivery_are_deduplicated(hook: Hook) -> None:
    body = fixture("01")
    assert (await hook.post(body)).json()["status"] == "queued"
    assert (await hook.post(body)).json()["status"] == "duplicate"
    delivery = "6a1f4f0e-3c55-4a57-9d0b-2b2f0c6b1a11"
    status = fixture("07")
    first = await hook.post(status, **{"X-Chatwoot-Delivery": delivery})
    again = await hook.post(status, **{"X-Chatwoot-Delivery": delivery})
    assert first.json()["status"] == "conversation_resolved"
    assert again.json() == {"status": "duplicate", "delivery": delivery}
    assert (await hook.queue.counts())["waiting"] == 0


@pytest.mark.parametrize(
    "tamper",
    ["no-signature", "wrong-secret", "stale", "future", "body-changed", "bad-prefix"],
)
async def test_bad_signatures_are_401_and_change_nothing(hook: Hook, tamper: str) -> None:
    body = fixture("01")
    headers = signed(body)
    if tamper == "no-signature":
        del headers["X-Chatwoot-Signature"]
    elif tamper == "wrong-secret":
        headers = signed(body, secret="not-the-secret")
    elif tamper == "stale":
        headers = signed(body, at=time.time() - 301)
    elif tamper == "future":
        headers = signed(body, at=time.time() + 600)
    elif tamper == "body-changed":
        body = body.replace(b"418", b"419", 1)
    elif tamper == "bad-prefix":
        headers["X-Chatwoot-Signature"] = headers["X-Chatwoot-Signature"].replace(
            "sha256=", "sha1="
        )
    response = await hook.client.post("/webhooks/chatwoot", content=body, headers=headers)
    assert response.status_code == 401
    assert SECRET not in response.text
    assert (await hook.queue.counts())["waiting"] == 0


async def test_content_type_json_and_size_limits(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> None:
    server, url = await start_api(redis_url, queue_name, SLUICE_WEBHOOK_MAX_BYTES="2048")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            plain = await client.post(
                "/webhooks/chatwoot", content=b"{}", headers={"Content-Type": "text/plain"}
            )
            assert plain.status_code == 415
            broken = await client.post(
                "/webhooks/chatwoot",
                content=b"{not json",
                headers={"Content-Type": "application/json"},
            )
            assert broken.status_code == 400
            big = await client.post(
                "/webhooks/chatwoot",
                content=fixture("01"),
                headers={"Content-Type": "application/json"},
            )
            assert big.status_code == 413

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(8):
                    yield b" " * 512

            streamed = await client.post(
                "/webhooks/chatwoot", content=chunks(), headers={"Content-Type": "application/json"}
            )
            assert streamed.status_code == 413
        queue = Queue(queue_name, redis=redis_client)
        assert (await queue.counts())["waiting"] == 0
    finally:
        await server.stop()
        await delete_queue_keys(redis_client, queue_name)


async def test_redis_down_is_answered_from_the_spool(queue_name: str, tmp_path: Path) -> None:
    """Chatwoot never retries an account webhook: a 429 would lose the message. The
    verified webhook is spooled to disk and answered 200 (tests/api/test_intake_spool.py
    has the replay)."""
    server, url = await start_api(
        "redis://127.0.0.1:1/0", queue_name, SLUICE_DATA_DIR=str(tmp_path)
    )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            response = await client.post(
                "/webhooks/chatwoot",
                content=fixture("01"),
                headers={"Content-Type": "application/json"},
            )
        assert response.status_code == 200
        assert response.json()["status"] == "spooled"
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("chatwoot_clock_offset_s", "real_delay_s"), [(-60.0, 0.0), (45.0, 0.0), (0.0, 30.0)]
)
async def test_the_sla_clock_ignores_chatwoot_clock_skew_but_not_real_delay(
    hook: Hook, chatwoot_clock_offset_s: float, real_delay_s: float
) -> None:
    """created_at and X-Chatwoot-Timestamp are both Chatwoot's clock: their difference is
    Chatwoot's own delay, whatever that clock's offset from ours. A minute of skew must not
    make a fresh message look a minute old (it would be handed off at once); a message that
    really waited 30 s in Chatwoot counts those 30 s."""
    chatwoot_now = time.time() + chatwoot_clock_offset_s
    payload = json.loads(fixture("01"))
    payload["created_at"] = int(chatwoot_now - real_delay_s)
    body = json.dumps(payload).encode()
    before_ms = time.time() * 1000
    response = await hook.client.post(
        "/webhooks/chatwoot", content=body, headers=signed(body, at=chatwoot_now)
    )
    assert response.status_code == 200, response.text
    job = await hook.queue.get_job(response.json()["job_id"])
    assert job is not None
    written_ms = job.hops["source_created"]
    assert job.payload["created_at_ms"] == pytest.approx(written_ms, abs=1)
    waited_s = (before_ms - written_ms) / 1000
    assert real_delay_s - 1.5 <= waited_s <= real_delay_s + 1.5


async def test_a_captured_signed_webhook_replayed_with_a_new_delivery_id_is_refused(
    hook: Hook,
) -> None:
    """Within the signature's 300 s window a captured request could be sent again with a
    new X-Chatwoot-Delivery (that header is not signed); a state event replayed that way
    would undo a human takeover. The (timestamp, signature) pair is used once."""
    body = fixture("07")  # conversation resolved
    headers = signed(body)
    first = await hook.client.post(
        "/webhooks/chatwoot", content=body, headers={**headers, "X-Chatwoot-Delivery": "a-1"}
    )
    assert first.status_code == 200 and first.json()["status"] != "ignored"
    again = await hook.client.post(
        "/webhooks/chatwoot", content=body, headers={**headers, "X-Chatwoot-Delivery": "b-2"}
    )
    assert again.status_code == 200
    assert again.json() == {"status": "ignored", "reason": "replay of an earlier request"}


async def test_an_unsigned_webhook_while_a_secret_is_set_says_why(hook: Hook) -> None:
    """A Chatwoot too old to sign (account webhooks sign from 4.11.2, bots from 4.13) would
    see every delivery refused with no hint: the refusal says what to do."""
    response = await hook.client.post(
        "/webhooks/chatwoot", content=fixture("01"), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert (
        "4.11.2" in response.json()["hint"] and "CHATWOOT_WEBHOOK_SECRET" in response.json()["hint"]
    )


async def test_a_conversation_event_without_an_account_uses_the_one_seen(hook: Hook) -> None:
    """Older Chatwoot versions put no top-level `account` on conversation events; with an
    empty messages[] the account comes from the messages this intake has seen."""
    await hook.post(fixture("01"))  # account 7, conversation 418
    payload = json.loads(fixture("07"))
    payload.pop("account", None)
    payload["messages"] = []
    body = json.dumps(payload).encode()
    response = await hook.post(body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "conversation_resolved"
