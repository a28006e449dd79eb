"""The service on a cluster: REDIS_CLUSTER and its detection, `sluice validate`, the health
document."""

from __future__ import annotations

import uuid

from sluice import Queue
from sluice.api.health import build, redis_status
from sluice.monitor.snapshot import Monitor
from sluice.redis.cluster import is_cluster
from sluice.redis.pool import connect_from_settings
from sluice.service import validate
from sluice.settings.config import load_settings
from sluice.testing.cluster import ValkeyCluster

from ..integration.conftest import delete_queue_keys


async def test_cluster_mode_is_detected_from_any_node(valkey_cluster: ValkeyCluster) -> None:
    settings = load_settings({"REDIS_URL": valkey_cluster.url})
    assert settings.redis_cluster is None
    handle = await connect_from_settings(settings, valkey_cluster.url)
    try:
        assert handle.cluster and is_cluster(handle.client)
        assert len(handle.client.get_primaries()) == 3
        pool = handle.metrics()
        nodes = len(handle.client.get_nodes())
        assert pool.opened >= 3 and pool.max == nodes * settings.redis_pool_max_connections
    finally:
        await handle.close()


async def test_redis_cluster_true_makes_a_cluster_client(valkey_cluster: ValkeyCluster) -> None:
    url = valkey_cluster.nodes[4].url  # a replica: the client finds the masters itself
    settings = load_settings({"REDIS_URL": url, "REDIS_CLUSTER": "true"})
    assert settings.redis_cluster is True
    handle = await connect_from_settings(settings, url)
    try:
        assert handle.cluster
        queue = Queue(f"svc-{uuid.uuid4().hex[:8]}", redis=handle.client)
        await queue.enqueue("c", {})
        assert (await queue.counts())["waiting"] == 1
        await delete_queue_keys(handle.client, queue.name)  # type: ignore[arg-type]
    finally:
        await handle.close()


async def test_a_single_server_is_not_taken_for_a_cluster(redis_url: str) -> None:
    handle = await connect_from_settings(load_settings({"REDIS_URL": redis_url}), redis_url)
    try:
        assert not handle.cluster and not is_cluster(handle.client)
    finally:
        await handle.close()


async def test_validate_understands_cluster_mode(valkey_cluster: ValkeyCluster) -> None:
    queue = f"val-{uuid.uuid4().hex[:8]}"
    settings = load_settings({"REDIS_URL": valkey_cluster.url, "SLUICE_QUEUE": queue})
    checks = {c.name: c for c in await validate.run(settings, valkey_cluster.url)}
    cluster = checks["cluster"]
    assert cluster.outcome == "pass", cluster.detail
    assert "cluster_state ok, 3 masters, 3 replicas" in cluster.detail
    assert "with 1 replica(s)" in cluster.detail
    assert checks["eviction policy"].outcome == "pass"
    assert "all 3 masters" in checks["eviction policy"].detail
    assert checks["persistence"].outcome == "warn"  # the fixture runs without AOF
    for name in ("scripts", "canary", "rate limit", "pause/resume"):
        assert name in checks and checks[name].outcome == "pass", (name, checks.get(name))
    assert all(c.outcome != "fail" for c in checks.values()), [
        (c.name, c.detail) for c in checks.values() if c.outcome == "fail"
    ]


async def test_health_document_reports_the_cluster(valkey_cluster: ValkeyCluster) -> None:
    settings = load_settings({"REDIS_URL": valkey_cluster.url})
    handle = await connect_from_settings(settings, valkey_cluster.url)
    queue = Queue(f"hl-{uuid.uuid4().hex[:8]}", redis=handle.client)
    try:
        status = await redis_status(queue)
        assert status.reachable and status.cluster is not None
        assert (status.cluster.state, status.cluster.masters, status.cluster.replicas) == (
            "ok",
            3,
            3,
        )
        owner = valkey_cluster.master_of_slot(status.cluster.slot)
        assert status.cluster.slot_owner == f"127.0.0.1:{owner.port}"
        assert status.maxmemory_policy == "noeviction"
        document = await build(settings, queue, Monitor(queue), handle, alerts=[])
        assert document.redis.cluster == status.cluster
        assert document.queue is not None and document.status != "critical", document.reasons
    finally:
        await delete_queue_keys(handle.client, queue.name)  # type: ignore[arg-type]
        await handle.close()


async def test_redis_cluster_true_without_warming_connects_on_first_use(
    valkey_cluster: ValkeyCluster,
) -> None:
    """The API's path when Redis is down at startup: no connection yet, a cluster client."""
    settings = load_settings({"REDIS_URL": valkey_cluster.url, "REDIS_CLUSTER": "true"})
    handle = await connect_from_settings(settings, valkey_cluster.url, warm=False)
    try:
        assert handle.cluster
        assert await handle.client.ping()
    finally:
        await handle.close()
