"""ReplayGuard against the real Redis: a verified (timestamp, signature) pair is accepted
once; the same signed request sent again (with any X-Chatwoot-Delivery) is a replay, while a
genuine Chatwoot retry (signed again with a new timestamp) is not."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from sluice.chatwoot.replay import ReplayGuard
from sluice.chatwoot.signature import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    verify,
)
from sluice.keys import QueueKeys
from tests.integration.conftest import delete_queue_keys

SECRET = "whsec-test-0123456789"
BODY = json.dumps({"event": "message_created", "id": 1001, "content": "hi"}).encode()


@pytest.fixture
async def guard(redis_client: aioredis.Redis, queue_name: str) -> AsyncIterator[ReplayGuard]:
    try:
        yield ReplayGuard(redis_client, QueueKeys(queue_name).replays, 300)
    finally:
        await delete_queue_keys(redis_client, queue_name)


def signed(timestamp: int, body: bytes = BODY) -> dict[str, str]:
    """Headers as Chatwoot sends them: a fresh delivery id, the timestamp and signature."""
    return {
        DELIVERY_HEADER: str(uuid.uuid4()),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(SECRET, timestamp, body),
    }


async def accepted(guard: ReplayGuard, headers: dict[str, str], body: bytes = BODY) -> bool:
    """What the intake will do: verify, then ask the guard."""
    verify(SECRET, body, headers, now=time.time())
    return await guard.first_use(headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])


async def test_a_captured_request_is_refused_with_a_new_delivery_id(guard: ReplayGuard) -> None:
    now = int(time.time())
    original = signed(now)
    assert await accepted(guard, original)
    replay = {**original, DELIVERY_HEADER: str(uuid.uuid4())}  # the dedupe would not see it
    assert replay[DELIVERY_HEADER] != original[DELIVERY_HEADER]
    assert not await accepted(guard, replay)
    assert not await accepted(guard, original)


async def test_a_chatwoot_retry_is_signed_again_and_passes(guard: ReplayGuard) -> None:
    """Chatwoot signs each attempt with Time.now: same delivery id and body, new pair."""
    now = int(time.time())
    first = signed(now - 3)
    retry = {**signed(now), DELIVERY_HEADER: first[DELIVERY_HEADER]}
    assert await accepted(guard, first)
    assert await accepted(guard, retry)


async def test_other_bodies_at_the_same_second_pass(guard: ReplayGuard) -> None:
    now = int(time.time())
    assert await accepted(guard, signed(now, b'{"id": 1}'), b'{"id": 1}')
    assert await accepted(guard, signed(now, b'{"id": 2}'), b'{"id": 2}')


async def test_spellings_that_verify_alike_are_the_same_pair(guard: ReplayGuard) -> None:
    """verify() accepts leading zeros and blanks in the timestamp and compares the hex
    case-insensitively: a replay must not pass as a "new" pair by respelling them."""
    now = int(time.time())
    headers = signed(now)
    assert await accepted(guard, headers)
    hex_digest = headers[SIGNATURE_HEADER].removeprefix("sha256=")
    for timestamp, signature in [
        (f"000{now}", headers[SIGNATURE_HEADER]),
        (f" {now} ", headers[SIGNATURE_HEADER]),
        (str(now), "sha256=" + hex_digest.upper()),
        (str(now), f"  {headers[SIGNATURE_HEADER]}  "),
    ]:
        respelled = {**headers, TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}
        assert not await accepted(guard, respelled), (timestamp, signature)


async def test_concurrent_copies_only_one_passes(guard: ReplayGuard) -> None:
    headers = signed(int(time.time()))
    results = await asyncio.gather(
        *(guard.first_use(headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]) for _ in range(50))
    )
    assert results.count(True) == 1


async def test_the_key_lives_under_the_prefix_a_bit_longer_than_the_window(
    guard: ReplayGuard, redis_client: aioredis.Redis, queue_name: str
) -> None:
    headers = signed(int(time.time()))
    assert await guard.first_use(headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    key = guard.key(headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    assert key.startswith(f"sluice:{{{queue_name}}}:replay:")
    ttl_ms = await redis_client.pttl(key)
    # window 300 s + 60 s a timestamp may be ahead + 60 s margin
    assert 360_000 < ttl_ms <= 420_000


async def test_a_pair_is_forgotten_after_its_window(
    redis_client: aioredis.Redis, queue_name: str
) -> None:
    short = ReplayGuard(
        redis_client, QueueKeys(queue_name).replays, 0.2, max_future_s=0, margin_s=0
    )
    try:
        assert await short.first_use("1700000000", "sha256=" + "ab" * 32)
        assert not await short.first_use("1700000000", "sha256=" + "ab" * 32)
        await asyncio.sleep(0.3)  # by then verify() refuses the pair as stale anyway
        assert await short.first_use("1700000000", "sha256=" + "ab" * 32)
    finally:
        await delete_queue_keys(redis_client, queue_name)


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [("", "sha256=" + "ab" * 32), ("12a", "sha256=" + "ab" * 32), ("1", ""), ("1", "sha256=xyz")],
)
async def test_unverified_input_is_refused(
    guard: ReplayGuard, timestamp: str, signature: str
) -> None:
    with pytest.raises(ValueError):
        await guard.first_use(timestamp, signature)


def test_bad_windows_are_refused(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError):
        ReplayGuard(redis_client, "p:", 0)
    with pytest.raises(ValueError):
        ReplayGuard(redis_client, "p:", 300, margin_s=-1)
