"""Without SLUICE_ADMIN_TOKEN the admin API, /metrics and the dashboard are open only to a
direct loopback client. A reverse proxy on the same host also connects from 127.0.0.1, so
any header a proxy adds (Forwarded, X-Forwarded-*, X-Real-IP) means the request came from
elsewhere: refused with a message that says to set the token, and nothing changes.

The API runs on a real loopback port against the real Redis (the peer of every request here
is 127.0.0.1); a peer that is not loopback is checked on the request object itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.requests import Request

from sluice.api.auth import PROXY_HEADERS, is_loopback, tokenless_refusal
from sluice.api.factory import create_app
from sluice.api.server import ApiServer
from sluice.queue.queue import Queue
from sluice.settings.config import load_settings

from ..integration.conftest import delete_queue_keys

RELAYED = {
    "forwarded": "for=203.0.113.7;proto=https",
    "x-forwarded-for": "203.0.113.7",
    "x-forwarded-host": "sluice.example.com",
    "x-forwarded-proto": "https",
    "x-real-ip": "203.0.113.7",
}


@dataclass
class Tokenless:
    client: httpx.AsyncClient
    queue: Queue


@pytest.fixture
async def tokenless(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> AsyncIterator[Tokenless]:
    settings = load_settings({"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name})
    assert settings.admin_token is None
    server = ApiServer(create_app(settings, redis_url, run_evaluator=False), "127.0.0.1", 0)
    url = await server.start()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield Tokenless(client, Queue(queue_name, redis=redis_client))
    finally:
        await server.stop()
        await delete_queue_keys(redis_client, queue_name)


def test_every_proxy_header_is_covered() -> None:
    assert set(RELAYED) == set(PROXY_HEADERS)


async def test_a_direct_loopback_client_needs_no_token(tokenless: Tokenless) -> None:
    assert (await tokenless.client.get("/api/admin/queue")).status_code == 200
    assert (await tokenless.client.get("/metrics")).status_code == 200
    assert (await tokenless.client.get("/dashboard/login")).status_code == 200
    assert (await tokenless.client.post("/api/admin/queue/pause")).status_code == 200
    assert (await tokenless.queue.counts())["paused"] is True


@pytest.mark.parametrize("header", list(RELAYED))
async def test_a_relayed_admin_request_is_refused(tokenless: Tokenless, header: str) -> None:
    headers = {header: RELAYED[header]}
    response = await tokenless.client.post("/api/admin/queue/pause", headers=headers)
    assert response.status_code == 403, response.text
    detail = response.json()["detail"]
    assert "SLUICE_ADMIN_TOKEN" in detail and header in detail
    assert (await tokenless.queue.counts())["paused"] is False  # nothing changed
    for path in ("/api/admin/queue", "/api/admin/migration-status", "/metrics"):
        assert (await tokenless.client.get(path, headers=headers)).status_code == 403, path


async def test_an_empty_proxy_header_still_counts(tokenless: Tokenless) -> None:
    response = await tokenless.client.get("/api/admin/queue", headers={"X-Forwarded-For": ""})
    assert response.status_code == 403


@pytest.mark.parametrize("header", list(RELAYED))
async def test_a_relayed_dashboard_request_is_refused(tokenless: Tokenless, header: str) -> None:
    headers = {header: RELAYED[header]}
    form = await tokenless.client.get("/dashboard/login", headers=headers)
    assert form.status_code == 403 and "SLUICE_ADMIN_TOKEN" in form.text
    login = await tokenless.client.post("/dashboard/login", data={}, headers=headers)
    assert login.status_code == 403
    assert "sluice_dash" not in login.headers.get("set-cookie", "")  # no session handed out
    assert (
        await tokenless.client.get("/dashboard/static/app.js", headers=headers)
    ).status_code == 403


async def test_a_session_made_locally_is_useless_through_a_proxy(tokenless: Tokenless) -> None:
    """A tokenless session cookie that leaks (or is made through a tunnel to loopback) does
    not open the dashboard to a proxied client: every /dashboard request is checked."""
    client = tokenless.client
    assert (await client.post("/dashboard/login", data={})).status_code == 303
    page = await client.get("/dashboard")
    assert page.status_code == 200
    csrf = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    relayed = {"X-Forwarded-For": "203.0.113.7"}
    assert (await client.get("/dashboard/api/summary", headers=relayed)).status_code == 403
    pause = await client.post(
        "/dashboard/api/queue/pause", headers={**relayed, "X-CSRF-Token": csrf}
    )
    assert pause.status_code == 403
    assert (await tokenless.queue.counts())["paused"] is False
    assert (await client.get("/dashboard/api/summary")).status_code == 200  # still fine locally


def request_from(host: str | None, headers: dict[str, str] | None = None) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/admin/queue",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": None if host is None else (host, 50_000),
    }
    return Request(scope)


@pytest.mark.parametrize("peer", ["10.0.0.5", "192.168.1.20", "203.0.113.7", "::ffff:10.0.0.5"])
def test_a_peer_that_is_not_loopback_is_refused(peer: str) -> None:
    reason = tokenless_refusal(request_from(peer))
    assert reason is not None and "SLUICE_ADMIN_TOKEN" in reason


def test_an_unknown_peer_is_refused() -> None:
    assert tokenless_refusal(request_from(None)) is not None


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_peers_are_admitted(peer: str) -> None:
    assert is_loopback(peer)
    assert tokenless_refusal(request_from(peer)) is None
    assert tokenless_refusal(request_from(peer, {"X-Real-IP": "127.0.0.1"})) is not None
