"""Admin token: the ways around it that test_admin_api.py does not try. The token counts
only as ``Authorization: Bearer <token>``; in a URL (where it would end up in access logs
and browser history), a cookie, Basic auth, or a mangled header it is refused with 401 and
nothing changes. Absurd headers get a 4xx, never a 500, and the server keeps answering."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from .conftest import TOKEN, Api
from .snapshot import redis_state_async


async def unchanged(api: Api, before: dict[str, Any]) -> bool:
    return await redis_state_async(api.queue.redis, api.queue.name) == before


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


REFUSED: dict[str, dict[str, Any]] = {
    "query-token": {"params": {"token": TOKEN}},
    "query-access_token": {"params": {"access_token": TOKEN}},
    "query-api_key": {"params": {"api_key": TOKEN}},
    "cookie": {"headers": {"Cookie": f"token={TOKEN}; sluice_admin_token={TOKEN}"}},
    "x-api-key-header": {"headers": {"X-API-Key": TOKEN}},
    "basic-token-as-password": {"headers": {"Authorization": basic("admin", TOKEN)}},
    "basic-token-as-user": {"headers": {"Authorization": basic(TOKEN, "")}},
    "token-without-scheme": {"headers": {"Authorization": TOKEN}},
    "other-scheme": {"headers": {"Authorization": f"Token {TOKEN}"}},
    "bearer-without-token": {"headers": {"Authorization": "Bearer"}},
    "bearer-prefix-only": {"headers": {"Authorization": f"Bearer {TOKEN[:-1]}"}},
    "bearer-with-suffix": {"headers": {"Authorization": f"Bearer {TOKEN} extra"}},
    "bearer-8k": {"headers": {"Authorization": "Bearer " + "a" * 8192}},
    "bearer-latin1-bytes": {"headers": {"Authorization": b"Bearer \xe9\xff\x80" + b"x" * 20}},
}


@pytest.mark.parametrize("way", list(REFUSED))
async def test_token_anywhere_but_a_bearer_header_is_refused(api: Api, way: str) -> None:
    before = await redis_state_async(api.queue.redis, api.queue.name)
    response = await api.anonymous.post("/api/admin/queue/pause", **REFUSED[way])
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in response.text
    assert await unchanged(api, before)
    assert (await api.queue.counts())["paused"] is False


@pytest.mark.parametrize("size", [64 * 1024, 1024 * 1024])
async def test_a_huge_authorization_header_is_a_4xx_not_a_crash(api: Api, size: int) -> None:
    """Beyond what the HTTP server takes in one header block: refused there (400/431)."""
    before = await redis_state_async(api.queue.redis, api.queue.name)
    try:
        response = await api.anonymous.post(
            "/api/admin/queue/pause", headers={"Authorization": "Bearer " + "a" * size}
        )
    except httpx.TransportError:
        pass  # the server may close the connection while the header is still being sent
    else:
        assert 400 <= response.status_code < 500, response.status_code
    assert await unchanged(api, before)
    assert (await api.anonymous.get("/healthz")).status_code == 200


async def test_the_bearer_scheme_is_case_insensitive(api: Api) -> None:
    """RFC 9110 §11.1: the scheme name is case-insensitive; the token itself is not."""
    ok = await api.anonymous.get("/api/admin/queue", headers={"Authorization": f"bearer {TOKEN}"})
    assert ok.status_code == 200
    upper = await api.anonymous.get(
        "/api/admin/queue", headers={"Authorization": f"Bearer {TOKEN.upper()}"}
    )
    assert upper.status_code == 401


async def test_dashboard_login_ignores_a_token_in_the_url(api: Api) -> None:
    """Only the form body counts: ?token= in the URL is not a login."""
    before = await redis_state_async(api.queue.redis, api.queue.name, skip=("dash:loginfail",))
    response = await api.anonymous.post("/dashboard/login", params={"token": TOKEN})
    assert response.status_code == 401
    assert "sluice_dash" not in response.headers.get("set-cookie", "")
    after = await redis_state_async(api.queue.redis, api.queue.name, skip=("dash:loginfail",))
    assert after == before  # no session (the failure is counted, as for any wrong token)
