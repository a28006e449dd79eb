"""Dashboard HTTP surface over a real loopback port and the real Redis (no browser):
login and sessions, CSRF on every state-changing route, static files, events, search."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from sluice.alerts.config import AlertSettings
from sluice.api.factory import create_app
from sluice.api.server import ApiServer
from sluice.queue.fairness import FairnessCaps
from sluice.queue.queue import Queue
from sluice.settings.config import load_settings

from ..api.conftest import TOKEN
from ..integration.conftest import delete_queue_keys


def dashboard_app(
    redis_url: str,
    queue_name: str,
    *,
    token: str | None = TOKEN,
    alert_settings: AlertSettings | None = None,
    run_evaluator: bool = False,
    **env: str,
) -> FastAPI:
    """The real app (create_app mounts the dashboard)."""
    environ = {"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name, **env}
    if token is not None:
        environ["SLUICE_ADMIN_TOKEN"] = token
    app = create_app(
        load_settings(environ),
        redis_url,
        alert_settings=alert_settings,
        run_evaluator=run_evaluator,
    )
    return app


def csrf_of(page: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert found, "the dashboard page carries the CSRF token"
    return found.group(1)


@dataclass
class Dash:
    url: str
    client: httpx.AsyncClient  # a browser-like client without a session yet
    queue: Queue

    async def login(self, token: str | None = TOKEN) -> str:
        """Log in and return the CSRF token of the session."""
        form = {"token": token} if token is not None else {}
        response = await self.client.post("/dashboard/login", data=form)
        assert response.status_code == 303, response.text
        page = await self.client.get("/dashboard")
        assert page.status_code == 200
        return csrf_of(page.text)


@pytest.fixture
async def dash(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> AsyncIterator[Dash]:
    server = ApiServer(dashboard_app(redis_url, queue_name), "127.0.0.1", 0)
    url = await server.start()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield Dash(url, client, Queue(queue_name, redis=redis_client))
    finally:
        await server.stop()
        await delete_queue_keys(redis_client, queue_name)


async def test_login_with_wrong_token_fails(dash: Dash) -> None:
    form = await dash.client.get("/dashboard/login")
    assert form.status_code == 200 and 'type="password"' in form.text
    wrong = await dash.client.post("/dashboard/login", data={"token": "nope"})
    assert wrong.status_code == 401
    assert "sluice_dash" not in wrong.headers.get("set-cookie", "")
    assert TOKEN not in wrong.text
    assert (await dash.client.get("/dashboard")).status_code == 303


async def test_login_sets_an_httponly_strict_session_cookie(dash: Dash) -> None:
    response = await dash.client.post("/dashboard/login", data={"token": TOKEN})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("sluice_dash=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert TOKEN not in cookie
    session_id = cookie.split(";")[0].split("=", 1)[1]
    # The session lives in Redis with a TTL, under a hash of its id (never the id itself).
    keys = [
        k async for k in dash.queue.redis.scan_iter(match=f"{dash.queue.keys.prefix}dash:session:*")
    ]
    assert len(keys) == 1 and session_id.encode() not in keys[0]
    assert 0 < await dash.queue.redis.ttl(keys[0]) <= 8 * 3600
    page = await dash.client.get("/dashboard")
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers
    assert page.headers["cache-control"] == "no-store"
    assert TOKEN not in page.text
    assert csrf_of(page.text)


async def test_pages_and_api_without_a_session(dash: Dash) -> None:
    page = await dash.client.get("/dashboard")
    assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
    for path in (
        "/dashboard/api/summary",
        "/dashboard/api/series",
        "/dashboard/events",
        "/dashboard/api/search?q=x",
        "/dashboard/api/dead-letters",
        "/dashboard/api/alerts",
        "/dashboard/api/deadlines",
        "/dashboard/api/concurrency",
    ):
        assert (await dash.client.get(path)).status_code == 401, path
    dash.client.cookies.set("sluice_dash", "made-up", path="/dashboard")
    forged = await dash.client.get("/dashboard")
    assert forged.status_code == 303


CONTROLS: list[tuple[str, dict[str, Any] | None]] = [
    ("/dashboard/api/queue/pause", None),
    ("/dashboard/api/queue/resume", None),
    ("/dashboard/api/queue/drain", {"confirm": True, "expected": 10}),
    ("/dashboard/api/settings", {"concurrency": 2, "rate_limit": 5}),
    ("/dashboard/api/profile", {"profile": "legacy"}),
    ("/dashboard/api/dead-letters/1/retry", None),
    ("/dashboard/api/dead-letters/1/delete", None),
    ("/dashboard/api/alerts/0123456789abcdef/ack", None),
    ("/dashboard/api/alerts/0123456789abcdef/silence", {"minutes": 5}),
    ("/dashboard/logout", None),
]


async def state_of(queue: Queue) -> tuple[dict[str, Any], dict[str, int | None]]:
    counts = await queue.counts()
    counts.pop("oldest_waiting_age_ms")  # grows by itself
    return counts, await queue.live_settings()


@pytest.mark.parametrize(("path", "body"), CONTROLS)
async def test_state_changes_need_session_and_csrf(
    dash: Dash, path: str, body: dict[str, Any] | None
) -> None:
    await dash.queue.enqueue("conv", {"text": "hi"})
    before = await state_of(dash.queue)
    # No session at all, even with a header.
    anonymous = await dash.client.post(path, json=body, headers={"X-CSRF-Token": "x"})
    assert anonymous.status_code == 403
    csrf = await dash.login()
    missing = await dash.client.post(path, json=body)
    assert missing.status_code == 403
    wrong = await dash.client.post(path, json=body, headers={"X-CSRF-Token": csrf + "x"})
    assert wrong.status_code == 403
    cross = await dash.client.post(
        path, json=body, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    )
    assert cross.status_code == 403
    after = await state_of(dash.queue)
    assert after == before, "a refused request changed nothing"
    assert await dash.queue.redis.hget(dash.queue.keys.meta, "profile") is None
    assert await dash.queue.redis.llen(dash.queue.keys.prefix + "alerts:commands") == 0
    assert (await dash.client.get("/dashboard")).status_code == 200  # still logged in


async def test_controls_with_csrf(dash: Dash) -> None:
    csrf = await dash.login()
    headers = {"X-CSRF-Token": csrf}
    for i in range(3):
        await dash.queue.enqueue(f"c{i}", {"i": i})
    pause = await dash.client.post("/dashboard/api/queue/pause", headers=headers)
    assert pause.json() == {"paused": True, "changed": True}
    assert (await dash.queue.counts())["paused"] is True
    preview = (await dash.client.get("/dashboard/api/drain-preview")).json()
    assert preview["would_remove"] == 3
    await dash.queue.enqueue("late", {})
    stale = await dash.client.post(
        "/dashboard/api/queue/drain", json={"confirm": True, "expected": 3}, headers=headers
    )
    assert stale.status_code == 409 and stale.json()["would_remove"] == 4
    assert (await dash.queue.counts())["waiting"] == 4
    drained = await dash.client.post(
        "/dashboard/api/queue/drain", json={"confirm": True, "expected": 4}, headers=headers
    )
    assert drained.json() == {"removed": 4}
    live = await dash.client.post(
        "/dashboard/api/settings", json={"concurrency": 4, "rate_limit": 7}, headers=headers
    )
    assert live.json() == {"concurrency": 4, "rate_limit": 7}
    legacy = await dash.client.post(
        "/dashboard/api/profile", json={"profile": "legacy"}, headers=headers
    )
    assert legacy.json()["profile"] == "legacy"
    summary = (await dash.client.get("/dashboard/api/summary")).json()
    assert summary["profile"]["effective"] == "legacy" and summary["counts"]["paused"] is True
    spool = summary["intake_spool"]  # this host's durable intake spool, empty here
    assert spool["depth"] == 0 and spool["last_error"] is None
    assert (await dash.client.post("/dashboard/api/queue/resume", headers=headers)).json()[
        "changed"
    ] is True
    out = await dash.client.post("/dashboard/logout", headers=headers)
    assert out.status_code == 200
    assert (await dash.client.get("/dashboard/api/summary")).status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/static/../../app.py",
        "/dashboard/static/%2e%2e/%2e%2e/app.py",
        "/dashboard/static/%2e%2e%2f%2e%2e%2fapp.py",
        "/dashboard/static/..%2f..%2froutes.py",
        "/dashboard/static/..%2froutes.py",
        "/dashboard/static/%252e%252e%252froutes.py",
        "/dashboard/static/..%5c..%5croutes.py",
        "/dashboard/static/vendor/../../routes.py",
        "/dashboard/static//etc/passwd",
        "/dashboard/static/%2fetc%2fpasswd",
        "/dashboard/static/index.html%00.css",
        "/dashboard/static/",
        "/dashboard/static/vendor",
        "/dashboard/static/nope.js",
    ],
)
async def test_static_path_traversal_is_impossible(dash: Dash, path: str) -> None:
    # Send the path exactly as written: no client-side normalisation of "..".
    url = httpx.URL(dash.url + "/").copy_with(raw_path=path.encode())
    response = await dash.client.get(url)
    assert response.status_code == 404, (path, response.status_code)
    assert "import" not in response.text and "root:" not in response.text


async def test_static_files_have_types_and_cache_headers(dash: Dash) -> None:
    js = await dash.client.get("/dashboard/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert js.headers["cache-control"] == "no-cache" and js.headers["etag"]
    again = await dash.client.get(
        "/dashboard/static/app.js", headers={"If-None-Match": js.headers["etag"]}
    )
    assert again.status_code == 304
    css = await dash.client.get("/dashboard/static/style.css")
    assert css.headers["content-type"].startswith("text/css")
    vendor = await dash.client.get("/dashboard/static/vendor/uplot/uPlot.iife.min.js")
    assert vendor.status_code == 200 and "max-age=86400" in vendor.headers["cache-control"]
    licence = await dash.client.get("/dashboard/static/vendor/uplot/LICENSE")
    assert licence.status_code == 200 and "MIT" in licence.text


async def test_events_stream_sends_a_snapshot(dash: Dash) -> None:
    await dash.login()
    await dash.queue.enqueue("conv-e", {"text": "hello"})
    async with dash.client.stream("GET", "/dashboard/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "snapshot":
                snapshot = json.loads(line.split(":", 1)[1])
                break
    assert snapshot["counts"]["waiting"] == 1
    assert set(snapshot["windows"]) == {"1m", "5m", "1h"}
    assert snapshot["thresholds"]["sla_warning_ms"] == 10_000
    # The stream recorded a queue depth sample for the charts.
    series = (await dash.client.get("/dashboard/api/series?span=1h")).json()
    assert len(series["points"]) == 60 and series["points"][-1]["depth"] == 1
    # Minutes before the queue existed have no values (blank on the chart), not zeros.
    assert series["points"][0]["throughput"] is None and series["points"][0]["p95"] is None
    assert series["points"][-1]["throughput"] == 0.0
    day = (await dash.client.get("/dashboard/api/series?span=24h")).json()
    assert day["step_s"] == 300 and 288 <= len(day["points"]) <= 289


async def test_search_by_message_id_job_id_and_conversation(dash: Dash) -> None:
    await dash.login()
    first = await dash.queue.enqueue("conv-42", {"text": "a"}, id="msg-a-1")
    second = await dash.queue.enqueue("conv-42", {"text": "b"}, id="msg-b-2")
    await dash.queue.enqueue("conv-other", {"text": "c"}, id="msg-c-3")

    async def search(q: str) -> dict[str, Any]:
        response = await dash.client.get("/dashboard/api/search", params={"q": q})
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result

    by_message = await search("msg-b-2")
    assert [m["id"] for m in by_message["matches"]] == [second]
    assert by_message["matches"][0]["matched_by"] == "message id"
    assert [h["hop"] for h in by_message["matches"][0]["timeline"]] == ["enqueued"]
    assert "payload" not in by_message["matches"][0]
    by_job = await search(first)
    assert by_job["matches"][0]["id"] == first and by_job["matches"][0]["matched_by"] == "job id"
    by_conversation = await search("conv-42")
    assert sorted(m["id"] for m in by_conversation["matches"]) == sorted([first, second])
    assert by_conversation["conversation"] == {"key": "conv-42", "waiting": 2, "running": False}
    assert (await search("nothing-like-this"))["matches"] == []
    job = await dash.client.get(f"/dashboard/api/jobs/{first}")
    assert job.json()["message_id"] == "msg-a-1"


async def test_without_admin_token_login_still_makes_a_session(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> None:
    server = ApiServer(dashboard_app(redis_url, queue_name, token=None), "127.0.0.1", 0)
    url = await server.start()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/dashboard/api/summary")).status_code == 401
            form = await client.get("/dashboard/login")
            assert 'type="password"' not in form.text
            assert (await client.post("/dashboard/login", data={})).status_code == 303
            page = await client.get("/dashboard")
            csrf = csrf_of(page.text)
            assert (await client.post("/dashboard/api/queue/pause")).status_code == 403
            ok = await client.post("/dashboard/api/queue/pause", headers={"X-CSRF-Token": csrf})
            assert ok.status_code == 200
    finally:
        await server.stop()
        await delete_queue_keys(redis_client, queue_name)


async def test_deadline_sources_and_switches(dash: Dash) -> None:
    """The counts the intake keeps (sluice.service.enqueue), most messages first, and the
    switches as configured (here: the defaults, every deadline switch off)."""
    await dash.login()
    await dash.queue.redis.hincrby(dash.queue.keys.deadline_sources, "priority", 2)
    await dash.queue.redis.hincrby(dash.queue.keys.deadline_sources, "rule:vip", 5)
    data = (await dash.client.get("/dashboard/api/deadlines")).json()
    assert data["sources"] == [
        {"source": "rule:vip", "messages": 5},
        {"source": "priority", "messages": 2},
    ]
    assert data["switches"] == {"priority_from_chatwoot": True, "waiting_since": False,
                                "sla": False, "rules_file": None}  # fmt: skip


async def test_concurrency_panel_shows_the_controller_and_its_decisions(dash: Dash) -> None:
    """Static by default; the target, its bounds and each decision with its reason come
    from what the controller wrote (the adaptive hash and the event stream)."""
    await dash.login()
    panel = (await dash.client.get("/dashboard/api/concurrency")).json()
    assert panel["mode"] == "static" and panel["status"]["target"] is None
    assert panel["history"] == []
    keys = dash.queue.keys
    await dash.queue.redis.hset(
        keys.adaptive, mapping={"target": 14, "min": 2, "max": 100, "decisions_up": 1}
    )
    await dash.queue.redis.xadd(
        keys.events,
        {"type": "concurrency", "job": "", "key": "target", "info": "wait: 10 → 14", "target": 14},
    )
    panel = (await dash.client.get("/dashboard/api/concurrency")).json()
    assert panel["status"]["target"] == 14 and panel["status"]["decisions"] == {"up": 1, "down": 0}
    assert [(h["target"], h["reason"]) for h in panel["history"]] == [(14, "wait: 10 → 14")]
    metrics = (await dash.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).text
    assert f'sluice_concurrency_target{{queue="{dash.queue.name}"}} 14.0' in metrics
    found = [line for line in metrics.splitlines() if "concurrency_decisions" in line]
    assert (
        f'sluice_concurrency_decisions_total{{direction="up",queue="{dash.queue.name}"}} 1.0'
        in metrics
    ), found


async def test_fairness_panel_data_needs_a_session_and_shows_the_caps(dash: Dash) -> None:
    assert (await dash.client.get("/dashboard/api/fairness")).status_code == 401
    await dash.queue.set_fairness(FairnessCaps(concurrency=2))
    for key in ("7:a", "7:b", "7:c", "8:a"):
        await dash.queue.enqueue(key, {})
    await dash.queue.reserve(3, worker_id="w")
    await dash.login()
    body = (await dash.client.get("/dashboard/api/fairness")).json()
    assert body["enabled"] and body["account_concurrency"] == 2
    rows = {a["account"]: (a["active"], a["held"]) for a in body["accounts"]}
    assert rows == {"7": (2, 1), "8": (1, 0)}
