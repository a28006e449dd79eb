"""The health document: ok, paused, overload, dead Redis, eviction policy."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from sluice import Completion

from .conftest import Api, start_api


async def test_ok_and_complete(api: Api) -> None:
    doc = (await api.client.get("/api/admin/migration-status")).json()
    assert doc["status"] in ("ok", "degraded")  # degraded only if the shared Redis evicts
    assert doc["redis"]["reachable"] is True
    assert doc["optimization"]["enabled"] is True
    assert doc["optimization"]["effective_profile"] == "optimized"
    assert set(doc["sla"]) == {"1m", "5m", "1h"}
    assert doc["pool"]["max"] == 20
    assert "SLUICE_ADMIN_TOKEN" in doc["optimization"]["config"]
    assert "test-admin-token" not in str(doc)


async def test_paused_queue_is_degraded(api: Api) -> None:
    await api.queue.pause()
    doc = (await api.client.get("/api/admin/migration-status")).json()
    assert doc["status"] == "degraded"
    assert any("paused" in reason for reason in doc["reasons"])
    assert doc["queue"]["paused"] is True


async def test_overload_is_critical_with_reasons(api: Api) -> None:
    await api.queue.enqueue("c", {})
    job_id = (await api.queue.redis.zrange(api.queue.keys.waiting, 0, 0))[0]
    score = await api.queue.redis.zscore(api.queue.keys.waiting, job_id)
    assert score is not None
    await api.queue.redis.zadd(api.queue.keys.waiting, {job_id: score - 45_000})
    response = await api.client.get("/api/admin/migration-status")
    assert response.status_code == 503
    doc = response.json()
    assert doc["status"] == "critical"
    assert any("oldest waiting message" in r for r in doc["reasons"])
    assert any("no live worker" in r for r in doc["reasons"])


async def test_sla_figures_reach_the_document(api: Api) -> None:
    now = time.time() * 1000
    await api.queue.enqueue("c", {}, hops={"source_created": now - 12_000, "received": now})
    job = (await api.queue.reserve(1, worker_id="w")).jobs[0]
    await api.queue.complete([Completion(job.id, job.token, {"reply_sent": now})], worker_id="w")
    doc = (await api.client.get("/api/admin/migration-status")).json()
    one = doc["sla"]["1m"]
    assert one["completed"] == 1 and one["verdicts"]["warning"] == 1
    assert one["sla_compliance"]["within_warning"] == 0.0
    assert abs(one["sla_duration_ms"]["p50"] - 12_000) < 300


async def test_dead_redis_is_critical_not_an_error(queue_name: str) -> None:
    server, url = await start_api("redis://127.0.0.1:1/0", queue_name)  # nothing listens
    try:
        import httpx

        headers = {"Authorization": "Bearer test-admin-token-0123456789"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            response = await client.get("/api/admin/migration-status")
            assert response.status_code == 503
            doc = response.json()
            assert doc["status"] == "critical"
            assert doc["redis"]["reachable"] is False
            assert doc["reasons"][0].startswith("Redis unreachable")
            assert (await client.get("/readyz")).status_code == 503
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await server.stop()


async def test_eviction_policy_is_flagged(api: Api, redis_client: aioredis.Redis) -> None:
    before = (await redis_client.config_get("maxmemory-policy"))["maxmemory-policy"]
    await redis_client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        doc = (await api.client.get("/api/admin/migration-status")).json()
    finally:
        await redis_client.config_set("maxmemory-policy", before)
    assert doc["status"] == "critical"
    assert any("maxmemory-policy" in r for r in doc["reasons"])
