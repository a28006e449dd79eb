"""Admin API over real HTTP: auth, controls, settings, profile, dead letters, jobs."""

from __future__ import annotations

import os

import pytest

from sluice.api.auth import InsecureBindError, check_bind_address

from .conftest import Api


async def test_probes_are_public(api: Api) -> None:
    assert (await api.anonymous.get("/healthz")).json() == {"status": "alive", "pid": os.getpid()}
    ready = await api.anonymous.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/admin/migration-status"),
        ("POST", "/api/admin/queue/pause"),
        ("GET", "/api/admin/dead-letters"),
        ("PUT", "/api/admin/settings"),
        ("GET", "/metrics"),
    ],
)
async def test_admin_routes_need_the_token(api: Api, method: str, path: str) -> None:
    missing = await api.anonymous.request(method, path, json={})
    assert missing.status_code == 401
    wrong = await api.anonymous.request(
        method, path, json={}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    assert "test-admin-token" not in wrong.text
    assert (await api.queue.counts())["paused"] is False


def test_no_token_only_on_loopback() -> None:
    check_bind_address("127.0.0.1", None)
    check_bind_address("::1", None)
    check_bind_address("0.0.0.0", "secret")
    with pytest.raises(InsecureBindError, match="SLUICE_ADMIN_TOKEN"):
        check_bind_address("0.0.0.0", None)


async def test_pause_resume_drain(api: Api) -> None:
    await api.queue.enqueue("a", {})
    await api.queue.enqueue("b", {})
    assert (await api.client.post("/api/admin/queue/pause")).json() == {
        "paused": True,
        "changed": True,
    }
    assert (await api.queue.counts())["paused"] is True
    refused = await api.client.post("/api/admin/queue/drain", json={})
    assert refused.status_code == 400 and "remove 2 waiting jobs" in refused.json()["detail"]
    assert (await api.queue.counts())["waiting"] == 2
    drained = await api.client.post("/api/admin/queue/drain", json={"confirm": True})
    assert drained.json() == {"removed": 2}
    assert (await api.client.post("/api/admin/queue/resume")).json()["changed"] is True


async def test_live_settings_and_profile_rollback(api: Api) -> None:
    put = await api.client.put("/api/admin/settings", json={"concurrency": 4, "rate_limit": 12})
    assert put.json() == {"concurrency": 4, "rate_limit": 12}
    assert await api.queue.live_settings() == {"concurrency": 4, "rate_limit": 12}
    bad = await api.client.put("/api/admin/settings", json={"concurrency": 0})
    assert bad.status_code == 422
    assert await api.queue.live_settings() == {"concurrency": 4, "rate_limit": 12}
    legacy = await api.client.post("/api/admin/profile", json={"profile": "legacy"})
    assert legacy.json() == {"concurrency": 3, "rate_limit": 10}
    doc = (await api.client.get("/api/admin/migration-status")).json()
    assert doc["optimization"]["effective_profile"] == "legacy"
    assert doc["optimization"]["effective"]["worker_concurrency"] == 3
    back = await api.client.post("/api/admin/profile", json={"profile": "optimized"})
    assert back.json() == {"concurrency": None, "rate_limit": None}


async def test_dead_letters_and_job_timeline(api: Api) -> None:
    job_id = await api.queue.enqueue("7:418", {"text": "hi"})
    job = (await api.queue.reserve(1, worker_id="w")).jobs[0]
    await api.queue.fail(job, "bad input", backoff_ms=0, retryable=False)
    listed = (await api.client.get("/api/admin/dead-letters")).json()
    assert [(d["id"], d["error"]) for d in listed] == [(job_id, "bad input")]
    timeline = (await api.client.get(f"/api/admin/jobs/{job_id}")).json()
    assert timeline["state"] == "dead" and "enqueued" in timeline["hops"]
    assert (await api.client.post(f"/api/admin/dead-letters/{job_id}/retry")).status_code == 200
    assert (await api.client.post(f"/api/admin/dead-letters/{job_id}/retry")).status_code == 404
    assert (await api.client.get("/api/admin/jobs/999999999")).status_code == 404
    assert (await api.client.get("/api/admin/jobs/not-a-number")).status_code == 422
    assert (await api.client.delete("/api/admin/dead-letters")).status_code == 400
