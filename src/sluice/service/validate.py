"""`sluice validate`: the origin's validation script, done properly.

Each check returns pass / warn / fail with a detail line; any fail makes the command exit
non-zero. The live checks (canary, rate limit, pause) run on a temporary queue that is
deleted afterwards, so validating a production Redis touches no real message. With
CHATWOOT_URL set, Chatwoot is checked too (:mod:`sluice.chatwoot.checks`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from sluice.keys import QueueKeys
from sluice.monitor.retention import COMPLETED_JOB_BYTES, projected_bytes
from sluice.monitor.windows import WindowReader
from sluice.queue import layout as layouts
from sluice.queue.job import Job
from sluice.queue.queue import Queue
from sluice.redis.cluster import RedisClient, is_cluster, node_for_key
from sluice.redis.embedded import is_embedded_server
from sluice.redis.pool import RedisHandle, RedisUnavailableError, connect_from_settings
from sluice.service.validate_cluster import cluster_checks
from sluice.settings.check import Check
from sluice.settings.config import Settings, redact_url
from sluice.worker import Worker

MIN_REDIS = (6, 2)
CANARY_DEADLINE_S = 5.0
# Completed jobs may take at most this share of maxmemory: the rest is for waiting jobs
# (a backlog is exactly when memory is needed), monitoring buckets and fragmentation.
RETENTION_SHARE = 0.5
# Windows whose measured throughput counts as "recent" (the larger one wins).
THROUGHPUT_WINDOWS = {"5m": 300, "1h": 3600}


def check_config(settings: Settings) -> list[Check]:
    checks = [
        Check(
            "profile",
            "pass",
            f"{settings.profile}: {settings.worker_concurrency} slots, "
            f"{settings.queue_rate_limit or 'unlimited'} jobs/s, pool "
            f"{'on' if settings.redis_pool_enabled else 'off'}",
        )
    ]
    if settings.profile == "optimized":
        if settings.worker_concurrency < 10 or 0 < settings.queue_rate_limit < 30:
            checks.append(
                Check(
                    "profile values",
                    "warn",
                    "optimized profile with values below its defaults (10 slots, 30 jobs/s): "
                    f"{', '.join(settings.explicit_variables) or 'none set'}",
                )
            )
        if not settings.redis_pool_enabled:
            checks.append(Check("profile values", "warn", "optimized profile without a pool"))
    warn, crit = settings.sla_warning_threshold_ms, settings.sla_critical_threshold_ms
    checks.append(
        Check(
            "thresholds",
            "pass" if 0 < warn < crit else "fail",
            f"SLA warning {warn / 1000:g} s < critical {crit / 1000:g} s",
        )
    )
    if settings.lease_ms > 10_000 - settings.heartbeat_ms:
        checks.append(
            Check(
                "recovery time",
                "warn",
                f"lease {settings.lease_ms} ms + poll: a killed worker's job waits more than 10 s",
            )
        )
    if settings.chatwoot_url:
        checks.append(check_chatwoot_url(settings.chatwoot_url))
    checks.append(check_deadlines(settings))
    return checks


def check_deadlines(settings: Settings) -> Check:
    """What sets a message's deadline (docs/priorities.md). A rules file that does not
    load has already stopped the settings, naming its line; this says what is on."""
    from sluice.deadlines.rules import load_rules_file

    parts = [
        f"Chatwoot priority {'on' if settings.priority_from_chatwoot else 'off'}",
        f"waiting_since {'on' if settings.deadline_from_waiting_since else 'off'}",
        f"SLA policies {'on' if settings.deadline_from_sla else 'off'}",
    ]
    if settings.priority_rules:
        rules = load_rules_file(settings.priority_rules).rules
        names = ", ".join(r.name for r in rules[:5]) + (", ..." if len(rules) > 5 else "")
        parts.append(f"{len(rules)} rules from {settings.priority_rules} ({names})")
    else:
        parts.append("no rules file")
    return Check("deadlines", "pass", "; ".join(parts))


def check_chatwoot_url(url: str) -> Check:
    """Where replies go, shown without credentials (this output is pasted into tickets); a
    warning when the URL carries some, as Chatwoot authenticates with CHATWOOT_API_TOKEN and
    credentials in a URL end up in proxy and access logs."""
    shown = redact_url(url)
    if shown == url:
        return Check("chatwoot url", "pass", shown)
    return Check(
        "chatwoot url",
        "warn",
        f"{shown}: CHATWOOT_URL carries credentials (user:password@ or a token parameter); "
        "Chatwoot takes its token from CHATWOOT_API_TOKEN",
    )


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _duration(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"


def retention_memory_check(
    *,
    retention_s: float,
    jobs_per_s: float,
    rate_source: str,
    limit_bytes: int,
    limit_source: str,
    bytes_per_job: float = COMPLETED_JOB_BYTES,
) -> Check:
    """Whether the completed jobs kept for ``retention_s`` at ``jobs_per_s`` fit in
    :data:`RETENTION_SHARE` of ``limit_bytes`` (0: no limit known). A warning, not a
    failure: the projection is only as good as the rate, and a deployment may plan more
    memory before its peak comes."""
    name = "retention memory"
    if retention_s <= 0:
        return Check(name, "pass", "completed jobs are deleted at once (retention 0)")
    if jobs_per_s <= 0:
        return Check(
            name,
            "pass",
            "no rate to project from (no completions measured, no QUEUE_RATE_LIMIT); "
            "set SLUICE_PEAK_RATE to check the retention against memory",
        )
    projected = projected_bytes(jobs_per_s, retention_s, bytes_per_job)
    basis = (
        f"{jobs_per_s:g} jobs/s ({rate_source}) x {_duration(retention_s)} "
        f"(SLUICE_COMPLETED_RETENTION_S) x {bytes_per_job:.0f} B = {_size(projected)}"
    )
    if limit_bytes <= 0:
        return Check(name, "pass", f"{basis}; no memory limit known to compare with")
    budget = RETENTION_SHARE * limit_bytes
    if projected <= budget:
        share = projected / limit_bytes
        return Check(name, "pass", f"{basis}, {share:.0%} of {limit_source} {_size(limit_bytes)}")
    fits_s = budget / (jobs_per_s * bytes_per_job)
    verdict = "exceeds" if projected > limit_bytes else f"is over {RETENTION_SHARE:.0%} of"
    consequence = (
        "under noeviction Redis then refuses writes, so the intake refuses messages"
        if limit_source == "maxmemory"
        else "without maxmemory Redis then grows until the host runs out of memory"
    )
    return Check(
        name,
        "warn",
        f"{basis} {verdict} {limit_source} {_size(limit_bytes)}: {consequence}; set "
        f"SLUICE_COMPLETED_RETENTION_S to at most {int(fits_s)} ({_duration(fits_s)}) "
        "or give Redis more memory",
    )


async def check_retention_memory(client: RedisClient, settings: Settings) -> Check:
    """The retention's projected memory against ``maxmemory`` (the host's memory when none
    is set). The rate is SLUICE_PEAK_RATE when set, else the larger of the configured rate
    limit and the throughput measured over the last 5 minutes and hour."""
    if settings.peak_rate is not None:
        rate, source = settings.peak_rate, "SLUICE_PEAK_RATE"
    else:
        keys = QueueKeys(settings.queue)
        # A partitioned queue's buckets are per partition, under the tags its layout records
        # (no layout: nothing was ever written to a partition but the first).
        layout = await layouts.read(client, keys)
        parts = [layout.keys(keys, p) for p in range(layout.highest)] if layout else [keys]
        reader = WindowReader(client, keys, parts=parts)
        windows = await reader.windows(THROUGHPUT_WINDOWS)
        measured = max(w.throughput for w in windows.values())
        rate, source = measured, "measured recent throughput"
        if settings.queue_rate_limit > measured:
            rate, source = float(settings.queue_rate_limit), "QUEUE_RATE_LIMIT"
    # On a cluster, the memory of the master that holds the queue.
    owner = node_for_key(client, QueueKeys(settings.queue).meta) if is_cluster(client) else None
    memory = await client.info("memory", **({"target_nodes": owner} if owner else {}))
    limit, limit_source = int(memory.get("maxmemory", 0) or 0), "maxmemory"
    if limit <= 0:
        limit, limit_source = int(memory.get("total_system_memory", 0) or 0), "host memory"
    return retention_memory_check(
        retention_s=settings.completed_retention_s,
        jobs_per_s=round(rate, 2),
        rate_source=source,
        limit_bytes=limit,
        limit_source=limit_source,
    )


async def check_redis(handle: RedisHandle, settings: Settings) -> list[Check]:
    client = handle.client
    started = time.perf_counter()
    await client.ping()
    latency = (time.perf_counter() - started) * 1000
    server = await client.info("server")
    memory = await client.info("memory")
    version_text = str(server.get("valkey_version") or server.get("redis_version"))
    version = tuple(int(p) for p in version_text.split(".")[:2])
    policy = str(memory.get("maxmemory_policy"))
    # Without REDIS_URL validate runs on an embedded server of its own, and a REDIS_URL may
    # name one as well (`sluice up` prints its address for other shells): ask the server.
    reachable = Check("redis reachable", "pass", f"PING {latency:.2f} ms")
    versions = Check(
        "redis version",
        "pass" if version >= MIN_REDIS else "fail",
        f"{version_text} (needs {'.'.join(map(str, MIN_REDIS))} or newer)",
    )
    if is_cluster(client):  # per master: docs/cluster.md
        pool = handle.metrics()
        sizes = Check("pool", "pass", f"cluster client, up to {pool.max} connections in all")
        return [
            reachable,
            versions,
            *await cluster_checks(client, settings.queue, settings.partitions),
            sizes,
        ]
    persistence = await check_persistence(client, embedded=is_embedded_server(server))
    pool = handle.metrics()
    expected = settings.redis_pool_min_connections if settings.redis_pool_enabled else 1
    return [
        reachable,
        versions,
        Check(
            "eviction policy",
            "pass" if policy == "noeviction" else "fail",
            f"maxmemory-policy {policy}"
            + ("" if policy == "noeviction" else ": evicted keys would lose messages"),
        ),
        persistence,
        Check(
            "pool minimum",
            "pass" if pool.opened >= min(expected, pool.max) else "fail",
            f"{pool.opened} connections opened at start (minimum {expected}, max {pool.max})",
        ),
    ]


async def check_persistence(client: RedisClient, *, embedded: bool = False) -> Check:
    """How much a Redis restart or crash can lose (docs/reliability.md, scenario e). A warning,
    not a failure: a scratch or demo queue may run without persistence on purpose.

    The advice names the switch that exists: ``appendonly`` / ``appendfsync`` in the
    configuration of an operator's Redis, but SLUICE_DATA_DIR for Sluice's ``embedded``
    server, whose configuration Sluice writes (an append-only file with ``appendfsync
    everysec`` in that directory, nothing persisted without it)."""
    info = await client.info("persistence")
    if not int(info.get("aof_enabled", 0)):
        if embedded:
            return Check(
                "persistence",
                "warn",
                "embedded Redis without SLUICE_DATA_DIR: queued messages live in memory "
                "only and are lost when Sluice stops; set SLUICE_DATA_DIR to a directory to "
                "keep them (an append-only file), or set REDIS_URL to a Redis of your own",
            )
        return Check(
            "persistence",
            "warn",
            "no append-only file: a Redis restart loses the queued messages "
            "(since the last RDB snapshot, if any); set appendonly yes in the Redis "
            "configuration",
        )
    try:
        fsync = str((await client.config_get("appendfsync")).get("appendfsync", "unknown"))
    except RedisError:  # managed Redis often refuses CONFIG
        fsync = "unknown"
    if fsync == "always":
        return Check("persistence", "pass", "append-only file, appendfsync always")
    window = (
        f"append-only file, appendfsync {fsync}: a crash of the Redis host can lose the last "
        "second of accepted messages (a clean restart loses nothing); "
    )
    if embedded:
        return Check(
            "persistence",
            "warn",
            f"embedded Redis with SLUICE_DATA_DIR, {window}to close that window, set "
            "REDIS_URL to a Redis of your own with appendfsync always or a replica",
        )
    return Check(
        "persistence", "warn", f"{window}appendfsync always or a replica closes that window"
    )


async def check_scripts(queue: Queue) -> Check:
    shas = await queue.scripts.load_all(queue.redis)
    loaded = await queue.redis.script_exists(*shas.values())
    ok = all(loaded)
    return Check(
        "scripts", "pass" if ok else "fail", f"{sum(loaded)}/{len(shas)} Lua scripts loaded"
    )


async def check_canary(queue: Queue) -> Check:
    """One message through enqueue -> worker -> completion, timed."""
    seen = asyncio.Event()

    async def handler(job: Job) -> None:
        job.mark("reply_sent")
        seen.set()

    worker = Worker(queue, handler, concurrency=1, handle_signals=False, idle_poll_s=0.2)
    task = asyncio.create_task(worker.run())
    started = time.perf_counter()
    try:
        await queue.enqueue("validate:canary", {"canary": True}, id=f"canary-{uuid.uuid4()}")
        await asyncio.wait_for(seen.wait(), CANARY_DEADLINE_S)
        elapsed = (time.perf_counter() - started) * 1000
    except TimeoutError:
        return Check("canary", "fail", f"no round trip within {CANARY_DEADLINE_S:g} s")
    finally:
        await worker.stop()
        await task
    counts = await queue.counts()
    if counts["completed"] != 1:
        return Check("canary", "fail", f"handled but not completed: {counts}")
    return Check("canary", "pass", f"round trip {elapsed:.1f} ms")


async def check_rate_limit(queue: Queue) -> Check:
    for n in range(10):
        await queue.enqueue(f"validate:rate:{n}", {})
    taken = await queue.reserve(10, worker_id="validate", rate_limit=5)
    second = await queue.reserve(10, worker_id="validate", rate_limit=5)
    await queue.release(taken.jobs)
    ok = len(taken.jobs) == 5 and second.status == "rate"
    return Check(
        "rate limit",
        "pass" if ok else "fail",
        f"limit 5/s granted {len(taken.jobs)} then {second.status!r}",
    )


async def check_pause(queue: Queue) -> Check:
    await queue.enqueue("validate:pause", {})
    await queue.pause()
    paused = await queue.reserve(1, worker_id="validate")
    await queue.resume()
    resumed = await queue.reserve(1, worker_id="validate")
    await queue.release(resumed.jobs)
    ok = paused.status == "paused" and len(resumed.jobs) == 1
    return Check(
        "pause/resume",
        "pass" if ok else "fail",
        f"paused -> {paused.status}, resumed -> {len(resumed.jobs)} job",
    )


async def _temporary(
    handle: RedisHandle, settings: Settings, body: Callable[[Queue], Awaitable[Check]]
) -> Check:
    name = f"validate-{uuid.uuid4().hex[:10]}"
    queue = Queue(
        name,
        redis=handle.client,
        sla_warning_ms=settings.sla_warning_threshold_ms,
        sla_critical_ms=settings.sla_critical_threshold_ms,
    )
    try:
        return await body(queue)
    finally:
        keys = [k async for k in handle.client.scan_iter(match=QueueKeys(name).prefix + "*")]
        if keys:
            await handle.client.delete(*keys)


ChannelCheck = Callable[[], Awaitable[list[Check]]]


async def run(settings: Settings, url: str, channels: ChannelCheck | None = None) -> list[Check]:
    checks = check_config(settings)
    redis_checks, redis_ok = await _redis_checks(settings, url)
    checks += redis_checks
    if settings.chatwoot_url:
        from sluice.chatwoot.checks import check_chatwoot

        checks += await check_chatwoot(settings)
    if channels is not None and redis_ok:
        checks += await channels()
    return checks


async def _redis_checks(settings: Settings, url: str) -> tuple[list[Check], bool]:
    """The Redis checks, and whether Redis could be reached at all."""
    checks: list[Check] = []
    try:
        handle = await connect_from_settings(settings, url)
    except (RedisUnavailableError, RedisError, OSError) as exc:
        checks.append(Check("redis reachable", "fail", str(exc)))
        return checks, False
    try:
        checks += await check_redis(handle, settings)
        checks.append(await check_retention_memory(handle.client, settings))
        checks.append(await check_scripts(Queue(settings.queue, redis=handle.client)))
        for body in (check_canary, check_rate_limit, check_pause):
            checks.append(await _temporary(handle, settings, body))
    except (RedisError, OSError) as exc:
        checks.append(Check("redis", "fail", f"{type(exc).__name__}: {exc}"))
    finally:
        await handle.close()
    return checks, True
