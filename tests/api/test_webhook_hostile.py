"""Hostile webhook bodies beyond the fixtures, over real HTTP, with and without a webhook
secret (signed bodies reach the JSON parser): deep nesting, absurd numbers, NaN, bad or
non-UTF-8 encodings, duplicated keys, oversized bodies, wrong content types, nothing at
all. Each gets a clear 4xx with a reason (never a 500), changes nothing in Redis, and the
server keeps answering. (Endless bodies and the server's memory: test_webhook_schema_fuzz.py.)

Several of them are built from fixture 01, a message that is queued when sent as is: a
lenient parser (plain ``json.loads``) would queue them too, or crash on them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
import redis.asyncio as aioredis

from sluice.api.webhooks import WEBHOOK_PATH
from sluice.chatwoot.signature import sign

from ..fixtures import CHATWOOT
from ..integration.conftest import delete_queue_keys
from .conftest import start_api
from .snapshot import redis_state_async, without

SECRET = "fictional-webhook-secret-0003"
LIMIT = 65_536
MESSAGE = (CHATWOOT / "01_message_created_incoming_first.json").read_text()
assert MESSAGE.lstrip().startswith("{")


def with_field(raw: str) -> bytes:
    """Fixture 01 with ``raw`` (a JSON member, written as is) inserted first."""
    return ("{" + raw + "," + MESSAGE.lstrip()[1:]).encode()


def with_string(raw: bytes) -> bytes:
    """Fixture 01 with a string member whose bytes are ``raw`` (not necessarily UTF-8)."""
    return with_field('"n": "?"').replace(b'"?"', b'"' + raw + b'"', 1)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@dataclass(frozen=True)
class Hostile:
    body: bytes | Callable[[], AsyncIterator[bytes]]
    status: int
    content_type: str | None = "application/json"


async def chunked_over_the_limit() -> AsyncIterator[bytes]:
    """Twice the limit in 8 KiB chunks, without Content-Length: the server can only find
    out by counting. (Endless bodies: test_webhook_schema_fuzz.py.)"""
    for _ in range(2 * LIMIT // 8192):
        yield b" " * 8192


HOSTILE = {
    "deep-array-10000": Hostile(nested(10_000), 400),
    "deep-object-10000": Hostile(b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400),
    "deep-inside-a-message": Hostile(with_field('"extra": ' + nested(10_000).decode()), 400),
    "integer-5000-digits": Hostile(with_field('"n": ' + "9" * 5000), 400),
    "lone-high-surrogate-escape": Hostile(with_string(b"\\ud800"), 400),
    "lone-low-surrogate-escape": Hostile(with_string(b"x\\udc00y"), 400),
    "swapped-surrogate-escapes": Hostile(with_string(b"\\udc00\\ud800"), 400),
    "float-overflow-1e999": Hostile(with_field('"n": 1e999'), 400),
    "NaN": Hostile(with_field('"n": NaN'), 400),
    "Infinity": Hostile(with_field('"n": Infinity'), 400),
    "-Infinity": Hostile(with_field('"n": -Infinity'), 400),
    "duplicated-id": Hostile(with_field('"id": 999999'), 400),
    "invalid-utf8": Hostile(with_string(b"\xff\xfe\xc0"), 400),
    "utf8-encoded-surrogate": Hostile(with_string(b"\xed\xa0\x80"), 400),
    "utf16-with-bom": Hostile(MESSAGE.encode("utf-16"), 400),
    "utf16-without-bom": Hostile(MESSAGE.encode("utf-16-le"), 400),
    "utf8-bom": Hostile(b"\xef\xbb\xbf" + MESSAGE.encode(), 400),
    "utf16-declared-charset": Hostile(
        MESSAGE.encode("utf-16"), 400, "application/json; charset=utf-16"
    ),
    "nul-byte": Hostile(b'{"event": "message_created\x00"}', 400),
    "truncated": Hostile(MESSAGE.encode()[:200], 400),
    "empty": Hostile(b"", 400),
    "whitespace-only": Hostile(b" \n\t ", 400),
    "not-an-object": Hostile(b"[1, 2, 3]", 422),
    "one-byte-over-the-limit": Hostile(MESSAGE.encode() + b" " * (LIMIT + 1 - len(MESSAGE)), 413),
    "chunked-over-the-limit": Hostile(chunked_over_the_limit, 413),
    "text/plain": Hostile(MESSAGE.encode(), 415, "text/plain"),
    "form-urlencoded": Hostile(b"event=x&id=1", 415, "application/x-www-form-urlencoded"),
    "multipart": Hostile(MESSAGE.encode(), 415, "multipart/form-data; boundary=x"),
    "json-lookalike": Hostile(MESSAGE.encode(), 415, "application/json-patch+json"),
    "no-content-type": Hostile(MESSAGE.encode(), 415, None),
}


@dataclass
class Hook:
    client: httpx.AsyncClient
    redis: aioredis.Redis
    queue_name: str
    secret: str | None

    def headers(self, body: bytes, content_type: str | None) -> dict[str, str]:
        headers = {"Content-Type": content_type} if content_type else {}
        if self.secret:
            now = int(time.time())
            headers["X-Chatwoot-Timestamp"] = str(now)
            headers["X-Chatwoot-Signature"] = sign(self.secret, now, body)
        return headers


@pytest.fixture(params=[None, SECRET], ids=["unsigned", "signed"])
async def hook(
    request: pytest.FixtureRequest, redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> AsyncIterator[Hook]:
    secret: str | None = request.param
    env = {"SLUICE_WEBHOOK_MAX_BYTES": str(LIMIT)}
    if secret:
        env["CHATWOOT_WEBHOOK_SECRET"] = secret
    server, url = await start_api(redis_url, queue_name, **env)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        try:
            yield Hook(client, redis_client, queue_name, secret)
        finally:
            await server.stop()
            await delete_queue_keys(redis_client, queue_name)


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_body_gets_a_clear_4xx_and_changes_nothing(hook: Hook, name: str) -> None:
    case = HOSTILE[name]
    before = await redis_state_async(hook.redis, hook.queue_name)
    if callable(case.body):
        content: bytes | AsyncIterator[bytes] = case.body()
        headers = hook.headers(b"", case.content_type)  # an over-limit body is never verified
    else:
        content = case.body
        headers = hook.headers(case.body, case.content_type)
    response = await hook.client.post(WEBHOOK_PATH, content=content, headers=headers)
    assert response.status_code == case.status, response.text[:300]
    assert response.json()["error"], "the answer says what is wrong"
    skip = ("intake:rejected",) if case.status == 422 else ()  # 422s are logged on purpose
    after = await redis_state_async(hook.redis, hook.queue_name, skip=skip)
    assert after == without(before, skip)
    assert (await hook.client.get("/healthz")).status_code == 200


async def test_a_body_exactly_at_the_limit_is_accepted(hook: Hook) -> None:
    """The limit is not off by one, and trailing whitespace is still JSON."""
    body = MESSAGE.encode() + b" " * (LIMIT - len(MESSAGE.encode()))
    assert len(body) == LIMIT
    response = await hook.client.post(
        WEBHOOK_PATH, content=body, headers=hook.headers(body, "application/json")
    )
    assert response.status_code == 200 and response.json()["status"] == "queued"


@pytest.mark.parametrize(
    "member",
    [
        # Integrators keep long numbers in custom_attributes; Rails sends them as is.
        '"custom_attributes": {"card": 18446744073709551616, "neg": -9223372036854775808}',
        # An emoji escaped as a surrogate pair, as some serializers write it.
        '"note": "\\ud83d\\ude00 and \\\\ud800 as text"',
    ],
    ids=["integer-over-bigint", "escaped-surrogate-pair"],
)
async def test_unusual_but_valid_json_is_accepted(hook: Hook, member: str) -> None:
    """Strict is not stricter than JSON: these are genuine payloads and must be queued."""
    body = with_field(member)
    response = await hook.client.post(
        WEBHOOK_PATH, content=body, headers=hook.headers(body, "application/json")
    )
    assert response.status_code == 200 and response.json()["status"] == "queued"


async def test_a_declared_length_over_the_limit_is_refused_before_the_body(hook: Hook) -> None:
    """Content-Length says 10 GB and no body follows: the answer comes at once (waiting for
    the body would hit the client timeout) and the connection is closed."""
    host, port = hook.client.base_url.host, hook.client.base_url.port
    assert port is not None
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            b"POST /webhooks/chatwoot HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 413"), answer[:200]
    assert b"connection: close" in head
