"""The health document at /api/admin/migration-status: one answer to "is every customer
being answered within the SLA, and if not, why?".

Overall status: ``critical`` when messages can be lost or the SLA is already broken
(Redis unreachable, an eviction policy other than noeviction, a critical alert, a message
waiting longer than the critical threshold); ``degraded`` when people should look (paused,
a warning alert, jobs waiting with no worker alive, a message older than the warning
threshold); else ``ok``. Every non-ok status lists its reasons.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import RedisCluster
from redis.exceptions import RedisError

from sluice.monitor.snapshot import Monitor
from sluice.queue.queue import Queue
from sluice.redis.cluster import cluster_overview, is_cluster, node_for_key
from sluice.redis.pool import RedisHandle
from sluice.service.profiles import live_profile
from sluice.service.spool import SpoolStats
from sluice.service.validate_cluster import placement
from sluice.settings.config import Settings

Status = Literal["ok", "degraded", "critical"]


class ClusterStatus(BaseModel):
    """Set when Redis is a cluster (docs/cluster.md); memory and policy above are then those
    of the master that owns the queue's slot (the worst policy of all masters)."""

    state: str = Field(description="cluster_state as the slot's owner sees it")
    masters: int
    replicas: int
    slot: int = Field(description="the queue's hash slot")
    slot_owner: str = Field(description="host:port of the master serving the slot")
    slot_owner_replicas: int
    partitions: list[SlotPlace] | None = Field(
        default=None,
        description="a partitioned queue: each partition's slot and master, then the "
        "limiter's (docs/partitions.md); the fields above are partition 0's",
    )


class SlotPlace(BaseModel):
    name: str = Field(description="a partition's number, or 'limiter'")
    slot: int
    owner: str = Field(description="host:port of the master serving the slot")


class RedisStatus(BaseModel):
    reachable: bool
    version: str | None = None
    latency_ms: float | None = None
    used_memory_bytes: int | None = None
    maxmemory_policy: str | None = None
    error: str | None = None
    cluster: ClusterStatus | None = None


class Percentiles(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None


class Compliance(BaseModel):
    within_warning: float | None = Field(description="share of messages within the warning")
    within_critical: float | None


class WindowReport(BaseModel):
    window: str
    completed: int
    failed: int
    dead: int
    enqueued: int
    sla_compliance: Compliance
    verdicts: dict[str, int]
    queue_wait_ms: Percentiles
    sla_duration_ms: Percentiles
    processing_ms: Percentiles
    throughput_per_s: float
    arrival_per_s: float
    failure_rate: float | None
    utilization: float | None
    breakdown_ms: dict[str, float | None]
    clock_skewed_messages: int


class QueueStatus(BaseModel):
    name: str
    paused: bool
    waiting: int
    active: int
    delayed: int
    dead: int
    completed: int
    ready_lanes: int
    oldest_waiting_age_ms: int
    # A partitioned queue (docs/partitions.md): the sums above, then each partition's
    # counts in partition order; one entry for an unpartitioned queue.
    partitions: list[dict[str, Any]] = []


class WorkersStatus(BaseModel):
    count: int
    slots: int
    busy: int
    utilization_now: float | None
    live: list[dict[str, Any]]


class Capacity(BaseModel):
    estimated_jobs_per_s: float | None = Field(description="Little's law: slots / mean time")
    rate_limit: int
    effective_jobs_per_s: float | None
    arrival_per_s_5m: float
    drain_seconds: float | None = Field(description="None when the backlog is not shrinking")


class Optimization(BaseModel):
    enabled: bool = Field(description="QUEUE_OPTIMIZATION_ENABLED")
    configured_profile: Literal["optimized", "legacy"]
    live_profile: Literal["optimized", "legacy"] | None
    effective_profile: Literal["optimized", "legacy"]
    effective: dict[str, int | bool]
    config: dict[str, Any] = Field(description="effective settings, secrets masked")


class AlertBrief(BaseModel):
    model_config = ConfigDict(extra="allow")
    rule: str
    severity: str
    status: str


class IntakeSpool(BaseModel):
    """The intake's durable spool on this host (sluice.service.spool)."""

    depth: int = Field(description="webhooks waiting for Redis, safe on disk")
    oldest_age_s: float
    write_failures: int = Field(description="webhooks refused with 503 since start")
    replayed: int
    last_error: str | None = Field(description="set while the spool cannot be written")


class HealthDocument(BaseModel):
    status: Status
    reasons: list[str]
    generated_at: str
    optimization: Optimization
    redis: RedisStatus
    pool: dict[str, float]
    queue: QueueStatus | None
    workers: WorkersStatus | None
    sla: dict[str, WindowReport]
    capacity: Capacity | None
    alerts: list[AlertBrief]
    intake_spool: IntakeSpool | None = None


async def redis_status(queue: Queue) -> RedisStatus:
    try:
        started = time.perf_counter()
        await queue.redis.ping()
        latency = (time.perf_counter() - started) * 1000
        if is_cluster(queue.redis):
            return await _cluster_status(queue.redis, queue, latency)
        server = await queue.redis.info("server")
        memory = await queue.redis.info("memory")
    except (RedisError, OSError) as exc:
        return RedisStatus(reachable=False, error=f"{type(exc).__name__}: {exc}")
    return RedisStatus(
        reachable=True,
        version=str(server.get("valkey_version") or server.get("redis_version")),
        latency_ms=round(latency, 3),
        used_memory_bytes=int(memory.get("used_memory", 0)),
        maxmemory_policy=str(memory.get("maxmemory_policy", "")) or None,
    )


async def _cluster_status(client: RedisCluster, queue: Queue, latency: float) -> RedisStatus:
    """The slot owner's server and memory, the cluster's state, and the first master whose
    policy is not noeviction (any master may come to hold the queue after a failover)."""
    view = await cluster_overview(client, queue.keys.meta)
    owner = node_for_key(client, queue.keys.meta)
    engines = await queue.current_engines()  # the partitions' keys, by the recorded layout
    server = await client.info("server", target_nodes=owner)
    memory = await client.info("memory", target_nodes=owner)
    policies = [facts["maxmemory_policy"] for facts in view.per_master.values()]
    policy = next((p for p in policies if p != "noeviction"), policies[0] if policies else "")
    return RedisStatus(
        reachable=True,
        version=str(server.get("valkey_version") or server.get("redis_version")),
        latency_ms=round(latency, 3),
        used_memory_bytes=int(memory.get("used_memory", 0)),
        maxmemory_policy=policy or None,
        cluster=ClusterStatus(
            state=view.state,
            masters=view.masters,
            replicas=view.replicas,
            slot=view.slot,
            slot_owner=view.owner,
            slot_owner_replicas=view.owner_replicas,
            partitions=[
                SlotPlace(name=name, slot=slot, owner=owner)
                for name, slot, owner in placement(client, [e.keys for e in engines])
            ]
            if len(engines) > 1
            else None,
        ),
    )


async def build(
    settings: Settings,
    queue: Queue,
    monitor: Monitor,
    redis: RedisHandle,
    alerts: list[dict[str, Any]],
    spool: SpoolStats | None = None,
) -> HealthDocument:
    reasons_critical: list[str] = []
    reasons_degraded: list[str] = []
    if spool is not None and spool.last_error:
        reasons_critical.append(
            f"intake spool cannot be written ({spool.last_error}): webhooks that Redis "
            "cannot take are refused with 503"
        )
    elif spool is not None and spool.depth:
        reasons_degraded.append(
            f"{spool.depth} webhooks wait in the intake spool (oldest {spool.oldest_age_s:.0f} s):"
            " Redis is slow or unreachable; they are replayed in order when it answers"
        )
    rstatus = await redis_status(queue)
    live = None
    snapshot: dict[str, Any] | None = None
    if rstatus.reachable:
        try:
            live = await live_profile(queue)
            snapshot = await monitor.snapshot()
        except (RedisError, OSError) as exc:
            rstatus = RedisStatus(reachable=False, error=f"{type(exc).__name__}: {exc}")
    if not rstatus.reachable:
        reasons_critical.append(f"Redis unreachable ({rstatus.error})")
    elif rstatus.cluster is not None and rstatus.cluster.state != "ok":
        reasons_critical.append(
            f"Redis Cluster state is {rstatus.cluster.state!r}: some slots are not served"
        )
    elif rstatus.maxmemory_policy not in (None, "noeviction"):
        reasons_critical.append(
            f"Redis maxmemory-policy is {rstatus.maxmemory_policy!r}: evicted keys would lose "
            "messages; set it to 'noeviction'"
        )

    queue_status = workers = capacity = None
    sla: dict[str, WindowReport] = {}
    overrides: dict[str, int | None] = {"concurrency": None, "rate_limit": None}
    if snapshot is not None:
        counts = snapshot["counts"]
        queue_status = QueueStatus(
            name=queue.name, partitions=snapshot.get("partitions") or [counts], **counts
        )
        w = snapshot["workers"]
        workers = WorkersStatus(
            count=w["count"],
            slots=w["slots"],
            busy=w["busy"],
            utilization_now=w["utilization_now"],
            live=w["list"],
        )
        sla = {name: WindowReport(**report) for name, report in snapshot["windows"].items()}
        capacity = Capacity(**snapshot["capacity"])
        overrides = await queue.live_settings()
        age = counts["oldest_waiting_age_ms"]
        if age > settings.sla_critical_threshold_ms:
            reasons_critical.append(
                f"oldest waiting message is {age / 1000:.1f} s old "
                f"(critical threshold {settings.sla_critical_threshold_ms / 1000:.0f} s)"
            )
        elif age > settings.sla_warning_threshold_ms:
            reasons_degraded.append(
                f"oldest waiting message is {age / 1000:.1f} s old "
                f"(warning threshold {settings.sla_warning_threshold_ms / 1000:.0f} s)"
            )
        if counts["paused"]:
            reasons_degraded.append("queue is paused: no new jobs start")
        if counts["waiting"] and not w["count"]:
            reasons_degraded.append(f"{counts['waiting']} jobs waiting and no live worker")
    for alert in alerts:
        if alert.get("status") != "firing":
            continue
        text = f"alert {alert.get('rule')} firing ({alert.get('severity')})"
        if alert.get("severity") == "critical":
            reasons_critical.append(text)
        else:
            reasons_degraded.append(text)

    status: Status = "ok"
    if reasons_degraded:
        status = "degraded"
    if reasons_critical:
        status = "critical"
    effective_profile = live or settings.profile
    return HealthDocument(
        status=status,
        reasons=reasons_critical + reasons_degraded,
        generated_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        optimization=Optimization(
            enabled=settings.queue_optimization_enabled,
            configured_profile=settings.profile,
            live_profile=live,
            effective_profile=effective_profile,
            effective={
                "worker_concurrency": overrides["concurrency"] or settings.worker_concurrency,
                "queue_rate_limit": (
                    overrides["rate_limit"]
                    if overrides["rate_limit"] is not None
                    else settings.queue_rate_limit
                ),
                "redis_pool_enabled": settings.redis_pool_enabled,
            },
            config=settings.describe(),
        ),
        redis=rstatus,
        pool={k: float(v) for k, v in redis.metrics().as_dict().items()},
        queue=queue_status,
        workers=workers,
        sla=sla,
        capacity=capacity,
        alerts=[AlertBrief(**a) for a in alerts],
        intake_spool=(
            IntakeSpool(
                depth=spool.depth,
                oldest_age_s=round(spool.oldest_age_s, 3),
                write_failures=spool.failures,
                replayed=spool.replayed,
                last_error=spool.last_error,
            )
            if spool is not None
            else None
        ),
    )
