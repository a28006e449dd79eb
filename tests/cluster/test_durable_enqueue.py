"""Queue(wait_replicas=N): an enqueue is acknowledged once N replicas confirmed it (WAIT on
the connection that wrote it), else NotReplicatedError with the job on the master."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from sluice import EnqueueRequest, Queue
from sluice.queue.durable import NotReplicatedError
from sluice.testing.cluster import ValkeyCluster

from ..api.conftest import start_api
from ..api.test_intake import SECRET, signed
from ..api.test_intake_spool import message
from ..integration.conftest import delete_queue_keys


async def test_replicated_enqueue_on_the_cluster(cluster_client: Any) -> None:
    queue = Queue(f"dur-{uuid.uuid4().hex[:8]}", redis=cluster_client, wait_replicas=1)
    try:
        first = await queue.enqueue("c1", {"n": 0}, id="m0")
        assert (await queue.add("c1", {"n": 0}, id="m0")).duplicate
        ids = await queue.enqueue_many(
            [EnqueueRequest(key="c1", payload={"n": n}) for n in range(1, 6)]
        )
        assert [int(i) for i in ids] == sorted(int(i) for i in ids) and first not in ids
        assert (await queue.counts())["waiting"] == 6
        # The replica of the slot's master has the lane, in order, already.
        master_node = cluster_client.get_node_from_key(queue.keys.meta)
        nodes = await cluster_client.cluster_nodes()
        master_id = nodes[master_node.name]["node_id"]
        replica = next(a for a, n in nodes.items() if n["master_id"] == master_id)
        host, port = replica.rsplit(":", 1)
        direct = aioredis.Redis(host=host, port=int(port))
        try:
            await direct.execute_command("READONLY")
            lane = await direct.lrange(queue.keys.lane("c1"), 0, -1)
        finally:
            await direct.aclose()
        assert [j.decode() for j in lane] == [first, *ids]
    finally:
        await delete_queue_keys(cluster_client, queue.name)


async def test_without_enough_replicas_the_enqueue_is_refused_but_kept(
    redis_client: aioredis.Redis, queue_name: str
) -> None:
    replicas = int((await redis_client.info("replication")).get("connected_slaves", 0))
    queue = Queue(queue_name, redis=redis_client, wait_replicas=replicas + 1, wait_timeout_ms=50)
    try:
        with pytest.raises(NotReplicatedError) as refused:
            await queue.enqueue("c1", {}, id="m1")
        assert refused.value.acked == replicas and len(refused.value.job_ids) == 1
        # The job is on the server; sending it again finds it (dedupe), and still says so.
        assert await queue.find_by_message_id("m1") == refused.value.job_ids[0]
        with pytest.raises(NotReplicatedError):
            await queue.enqueue_many([EnqueueRequest(key="c2", payload={})])
        assert (await queue.counts())["waiting"] == 2
    finally:
        await delete_queue_keys(redis_client, queue_name)


async def _post_one(redis_url: str, queue_name: str, tmp_path: Path, **env: str) -> dict[str, Any]:
    server, url = await start_api(
        redis_url,
        queue_name,
        CHATWOOT_WEBHOOK_SECRET=SECRET,
        SLUICE_DATA_DIR=str(tmp_path),
        **env,
    )
    try:
        body = message(4242, "hello")
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            response = await client.post("/webhooks/chatwoot", content=body, headers=signed(body))
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer
    finally:
        await server.stop()


async def test_service_spools_a_webhook_its_replicas_did_not_confirm(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str, tmp_path: Path
) -> None:
    replicas = int((await redis_client.info("replication")).get("connected_slaves", 0))
    try:
        answer = await _post_one(
            redis_url,
            queue_name,
            tmp_path,
            SLUICE_ENQUEUE_WAIT_REPLICAS=str(replicas + 1),
            SLUICE_ENQUEUE_WAIT_TIMEOUT_MS="50",
        )
        assert answer["status"] == "spooled", answer
    finally:
        await delete_queue_keys(redis_client, queue_name)


async def test_service_on_the_cluster_with_replicated_enqueue(
    valkey_cluster: ValkeyCluster, cluster_client: Any, tmp_path: Path
) -> None:
    name = f"svcw-{uuid.uuid4().hex[:8]}"
    try:
        answer = await _post_one(
            valkey_cluster.url, name, tmp_path, SLUICE_ENQUEUE_WAIT_REPLICAS="1"
        )
        assert answer["status"] != "spooled", answer
        assert (await Queue(name, redis=cluster_client).counts())["waiting"] == 1
    finally:
        await delete_queue_keys(cluster_client, name)
