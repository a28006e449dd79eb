"""The service on a partitioned queue (SLUICE_PARTITIONS=3, docs/partitions.md): the
dashboard's summary shows depth per partition, search and job lookups find jobs on any
partition, the health document lists each partition's counts."""

from __future__ import annotations

import httpx
import redis.asyncio as aioredis

from sluice.api.server import ApiServer
from sluice.keys import partition_of
from sluice.queue.queue import Queue

from ..api.conftest import TOKEN
from ..integration.test_partitions import delete_partitioned_keys
from .test_dashboard_api import dashboard_app


async def test_dashboard_and_health_on_three_partitions(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, redis=redis_client, partitions=3)
    key = next(f"7:{n}" for n in range(100) if partition_of(f"7:{n}", 3) == 2)
    job_id = await queue.enqueue(key, {"text": "hi"}, id="cw-1")
    assert job_id.startswith("2_")
    server = ApiServer(dashboard_app(redis_url, queue_name, SLUICE_PARTITIONS="3"), "127.0.0.1", 0)
    url = await server.start()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            login = await client.post("/dashboard/login", data={"token": TOKEN})
            assert login.status_code == 303
            summary = (await client.get("/dashboard/api/summary")).json()
            assert [p["waiting"] for p in summary["partitions"]] == [0, 0, 1]
            assert summary["counts"]["waiting"] == 1
            found = (await client.get("/dashboard/api/search", params={"q": key})).json()
            assert [m["id"] for m in found["matches"]] == [job_id]
            by_message = (await client.get("/dashboard/api/search", params={"q": "cw-1"})).json()
            assert [m["id"] for m in by_message["matches"]] == [job_id]
            assert (await client.get(f"/dashboard/api/jobs/{job_id}")).status_code == 200
            admin = {"Authorization": f"Bearer {TOKEN}"}
            job = await client.get(f"/api/admin/jobs/{job_id}", headers=admin)
            assert job.status_code == 200, job.text
            health = (await client.get("/api/admin/migration-status", headers=admin)).json()
            assert [p["waiting"] for p in health["queue"]["partitions"]] == [0, 0, 1]
    finally:
        await server.stop()
        await delete_partitioned_keys(redis_client, queue_name)
