"""Oversized request bodies on the admin API and the dashboard (login, controls), and the
webhook's streaming limit, at two levels:

* ASGI level (no network): with a ``receive`` that would go on forever, the app refuses
  after reading the limit plus the bounded drain, never the whole body, and the route
  never runs. This is what keeps the process's memory bounded.
* Over real HTTP against the real Redis: 413 with a reason, for declared and chunked
  bodies, and nothing changes (not paused, settings and queue as they were, no session,
  no login failure counted); a body at the limit still works.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from sluice.api.body_limit import DEFAULT_MAX_BYTES, DRAIN_BYTES, BodyLimit, declared_length
from sluice.api.factory import create_app
from sluice.api.webhooks import WEBHOOK_PATH
from sluice.queue.queue import Queue
from sluice.settings.config import load_settings

from ..integration.conftest import delete_queue_keys
from .conftest import TOKEN, Api, start_api
from .snapshot import redis_state_async

CHUNK = 16_384
OVER = DEFAULT_MAX_BYTES + 1


# ------------------------------------------------------------------ ASGI level


@dataclass
class Endless:
    """An ASGI ``receive`` for a body that never ends; counts what the app pulled."""

    pulled: int = 0

    async def __call__(self) -> dict[str, Any]:
        self.pulled += CHUNK
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": True}


@dataclass
class Sent:
    messages: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


def scope(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test"), *(headers or [])],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }


async def never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the route ran although the body was over the limit")


async def test_middleware_stops_reading_an_endless_body() -> None:
    receive, sent = Endless(), Sent()
    await BodyLimit(never_called)(scope("/api/admin/queue/pause"), receive, sent)
    assert sent.status == 413
    assert sent.headers[b"connection"] == b"close"  # it goes on: do not read the rest
    assert json.loads(sent.body)["detail"] == f"request body over {DEFAULT_MAX_BYTES} bytes"
    assert receive.pulled <= DEFAULT_MAX_BYTES + DRAIN_BYTES + 2 * CHUNK


async def test_middleware_refuses_a_declared_length_without_reading() -> None:
    receive, sent = Endless(), Sent()
    headers = [(b"content-length", b"10000000000")]
    await BodyLimit(never_called)(scope("/dashboard/login", headers), receive, sent)
    assert sent.status == 413 and receive.pulled == 0


async def test_middleware_drains_a_finite_oversized_body_then_answers() -> None:
    """An oversized body that ends within the drain is read (and dropped) to its end, so
    the connection stays usable and the client is not reset while still sending."""
    chunks = [b"x" * CHUNK] * ((OVER // CHUNK) + 2)
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    sent = Sent()
    await BodyLimit(never_called)(scope("/api/admin/settings"), receive, sent)
    assert sent.status == 413 and b"connection" not in sent.headers
    assert messages == []


async def test_middleware_replays_a_body_within_the_limit_unchanged() -> None:
    parts = [b'{"concurrency": ', b"4", b"}"]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]
    seen: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def echo(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(message["body"])
            if not message["more_body"]:
                break
        # After the body, the server's receive again (a disconnect, for streaming answers).
        assert (await receive())["type"] == "http.disconnect"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent = Sent()
    await BodyLimit(echo)(scope("/api/admin/settings"), receive, sent)
    assert sent.status == 204 and b"".join(seen) == b'{"concurrency": 4}'


@pytest.mark.parametrize(
    ("path", "root_path"),
    [(WEBHOOK_PATH, ""), (WEBHOOK_PATH + "/", ""), ("/sluice" + WEBHOOK_PATH, "/sluice")],
    ids=["exact", "trailing-slash", "behind-a-root-path"],
)
async def test_exempt_paths_are_passed_through_untouched(path: str, root_path: str) -> None:
    receive, sent = Endless(), Sent()
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    request = {**scope(path), "root_path": root_path}
    await BodyLimit(app, exempt=[WEBHOOK_PATH])(request, receive, sent)
    assert reached == [path] and receive.pulled == 0


async def test_a_prefix_of_an_exempt_path_is_not_exempt() -> None:
    """Only the route itself: /webhooks/chatwootX or a path under another root is limited."""
    for path, root in (("/webhooks/chatwootX", ""), ("/other/webhooks/chatwoot", "/sluice")):
        receive, sent = Endless(), Sent()
        request = {**scope(path), "root_path": root}
        await BodyLimit(never_called, exempt=[WEBHOOK_PATH])(request, receive, sent)
        assert sent.status == 413


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12", 12), (" 7 ", 7), ("", None), ("-1", None), ("1e3", None), ("²", None),
     ("9" * 5000, 10**18)],
)  # fmt: skip
def test_declared_length_never_raises(value: str, expected: int | None) -> None:
    assert declared_length(value) == expected


async def test_webhook_reads_at_most_the_limit_and_the_drain(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> None:
    """The real app (lifespan and all) with an endless chunked webhook body: 413 after the
    limit plus the drain, the body never read whole and never queued."""
    limit = 65_536
    settings = load_settings(
        {"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name, "SLUICE_WEBHOOK_MAX_BYTES": str(limit)}
    )
    app = create_app(settings, redis_url, run_evaluator=False)
    receive, sent = Endless(), Sent()
    headers = [(b"content-type", b"application/json")]
    try:
        async with app.router.lifespan_context(app):
            await app(scope(WEBHOOK_PATH, headers), receive, sent)
        assert sent.status == 413 and sent.headers[b"connection"] == b"close"
        assert receive.pulled <= limit + DRAIN_BYTES + 2 * CHUNK
        assert (await Queue(queue_name, redis=redis_client).counts())["waiting"] == 0
    finally:
        await delete_queue_keys(redis_client, queue_name)


# ------------------------------------------------------------------ over HTTP


def padded(doc: dict[str, Any], size: int) -> bytes:
    """``doc`` as JSON of exactly ``size`` bytes (a padding member fills it)."""
    base = json.dumps({**doc, "pad": ""}).encode()
    return json.dumps({**doc, "pad": "x" * (size - len(base))}).encode()


async def chunked(body: bytes) -> AsyncIterator[bytes]:
    """The body without Content-Length (chunked transfer encoding)."""
    for i in range(0, len(body), CHUNK):
        yield body[i : i + CHUNK]


async def snapshot(api: Api) -> dict[str, bytes | None]:
    return await redis_state_async(api.queue.redis, api.queue.name)


ADMIN: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/admin/queue/pause", {}),
    ("POST", "/api/admin/queue/drain", {"confirm": True}),
    ("PUT", "/api/admin/settings", {"concurrency": 4, "rate_limit": 12}),
    ("POST", "/api/admin/profile", {"profile": "legacy"}),
    ("POST", "/api/admin/alerts/rule_name_here/silence", {"minutes": 5}),
]


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("method", "path", "doc"), ADMIN, ids=[a[1] for a in ADMIN])
async def test_oversized_admin_bodies_are_413_and_change_nothing(
    api: Api, method: str, path: str, doc: dict[str, Any], streamed: bool
) -> None:
    await api.queue.enqueue("7:418", {"text": "hi"})
    before = await snapshot(api)
    body = padded(doc, OVER)
    content = chunked(body) if streamed else body
    response = await api.client.request(
        method, path, content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert "request body over" in response.json()["detail"]
    assert await snapshot(api) == before


async def test_an_admin_body_at_the_limit_is_accepted(api: Api) -> None:
    body = padded({"concurrency": 4, "rate_limit": 12}, DEFAULT_MAX_BYTES)
    assert len(body) == DEFAULT_MAX_BYTES
    response = await api.client.put(
        "/api/admin/settings", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert await api.queue.live_settings() == {"concurrency": 4, "rate_limit": 12}


@dataclass
class Dash:
    client: httpx.AsyncClient
    queue: Queue

    async def csrf(self) -> str:
        """Log in (a normal form) and return the session's CSRF token."""
        login = await self.client.post("/dashboard/login", data={"token": TOKEN})
        assert login.status_code == 303, login.text
        page = (await self.client.get("/dashboard")).text
        found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
        assert found
        return found.group(1)


@pytest.fixture
async def dash(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> AsyncIterator[Dash]:
    server, url = await start_api(redis_url, queue_name)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        try:
            yield Dash(client, Queue(queue_name, redis=redis_client))
        finally:
            await server.stop()
            await delete_queue_keys(redis_client, queue_name)


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_oversized_login_is_413_without_session_or_failure_count(
    dash: Dash, streamed: bool
) -> None:
    """Even with the right token inside: refused before the route reads the form."""
    form = f"token={TOKEN}&pad={'x' * OVER}".encode()
    before = await redis_state_async(dash.queue.redis, dash.queue.name)
    response = await dash.client.post(
        "/dashboard/login",
        content=chunked(form) if streamed else form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert "sluice_dash" not in response.headers.get("set-cookie", "")
    assert await redis_state_async(dash.queue.redis, dash.queue.name) == before
    assert (await dash.client.get("/dashboard")).status_code == 303  # not logged in


CONTROLS: list[tuple[str, dict[str, Any]]] = [
    ("/dashboard/api/queue/pause", {}),
    ("/dashboard/api/queue/drain", {"confirm": True, "expected": 1}),
    ("/dashboard/api/settings", {"concurrency": 2, "rate_limit": 5}),
    ("/dashboard/api/profile", {"profile": "legacy"}),
    ("/dashboard/logout", {}),
]


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("path", "doc"), CONTROLS, ids=[c[0] for c in CONTROLS])
async def test_oversized_dashboard_controls_are_413_and_change_nothing(
    dash: Dash, path: str, doc: dict[str, Any], streamed: bool
) -> None:
    """With a valid session and CSRF token, so only the size stops them."""
    await dash.queue.enqueue("7:418", {"text": "hi"})
    csrf = await dash.csrf()
    before = await redis_state_async(dash.queue.redis, dash.queue.name)
    body = padded(doc, OVER)
    response = await dash.client.post(
        path,
        content=chunked(body) if streamed else body,
        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
    )
    assert response.status_code == 413
    assert await redis_state_async(dash.queue.redis, dash.queue.name) == before
    assert (await dash.client.get("/dashboard")).status_code == 200  # still logged in


async def test_webhook_keeps_its_own_larger_limit(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> None:
    """The 64 KiB limit of admin routes does not apply to the webhook: a 200 KiB message
    (Chatwoot messages can be long) is queued under the default 1 MiB webhook limit."""
    server, url = await start_api(redis_url, queue_name)
    body = padded(
        {
            "event": "message_created",
            "id": 5001,
            "message_type": "incoming",
            "created_at": "2025-01-01T10:00:00Z",
            "account": {"id": 7},
            "conversation": {"id": 418, "status": "pending"},
        },
        200 * 1024,
    )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            response = await client.post(
                WEBHOOK_PATH, content=body, headers={"Content-Type": "application/json"}
            )
        assert response.status_code == 200 and response.json()["status"] == "queued"
    finally:
        await server.stop()
        await delete_queue_keys(redis_client, queue_name)
