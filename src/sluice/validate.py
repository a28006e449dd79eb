"""`sluice validate`: the origin's validation script, done properly.

Each check returns pass / warn / fail with a detail line; any fail makes the command exit
non-zero. The live checks (canary, rate limit, pause) run on a temporary queue that is
deleted afterwards, so validating a production Redis touches no real message.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sluice.config import Settings
from sluice.queue.job import Job
from sluice.queue.queue import Queue
from sluice.redis.pool import RedisHandle, RedisUnavailableError, connect
from sluice.worker.runtime import Worker

Outcome = Literal["pass", "warn", "fail"]
MIN_REDIS = (6, 2)
CANARY_DEADLINE_S = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    return checks


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
    persistence = await check_persistence(client)
    pool = handle.metrics()
    expected = settings.redis_pool_min_connections if settings.redis_pool_enabled else 1
    return [
        Check("redis reachable", "pass", f"PING {latency:.2f} ms"),
        Check(
            "redis version",
            "pass" if version >= MIN_REDIS else "fail",
            f"{version_text} (needs {'.'.join(map(str, MIN_REDIS))} or newer)",
        ),
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


async def check_persistence(client: aioredis.Redis) -> Check:
    """How much a Redis restart or crash can lose (docs/reliability.md, scenario e). A warning,
    not a failure: a scratch or demo queue may run without persistence on purpose."""
    info = await client.info("persistence")
    if not int(info.get("aof_enabled", 0)):
        return Check(
            "persistence",
            "warn",
            "no append-only file: a Redis restart loses the queued messages "
            "(since the last RDB snapshot, if any); set appendonly yes",
        )
    try:
        fsync = str((await client.config_get("appendfsync")).get("appendfsync", "unknown"))
    except RedisError:  # managed Redis often refuses CONFIG
        fsync = "unknown"
    if fsync == "always":
        return Check("persistence", "pass", "append-only file, appendfsync always")
    return Check(
        "persistence",
        "warn",
        f"append-only file, appendfsync {fsync}: a crash of the Redis host can lose the last "
        "second of accepted messages (a clean restart loses nothing); appendfsync always "
        "or a replica closes that window",
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
        keys = [k async for k in handle.client.scan_iter(match=f"sluice:{{{name}}}:*")]
        if keys:
            await handle.client.delete(*keys)


ChannelCheck = Callable[[], Awaitable[list[Check]]]


async def run(settings: Settings, url: str, channels: ChannelCheck | None = None) -> list[Check]:
    checks = check_config(settings)
    try:
        handle = await connect(
            url,
            pool_enabled=settings.redis_pool_enabled,
            min_connections=settings.redis_pool_min_connections,
            max_connections=settings.redis_pool_max_connections,
            wait_timeout_s=settings.redis_pool_timeout_s,
        )
    except (RedisUnavailableError, RedisError, OSError) as exc:
        checks.append(Check("redis reachable", "fail", str(exc)))
        return checks
    try:
        checks += await check_redis(handle, settings)
        checks.append(await check_scripts(Queue(settings.queue, redis=handle.client)))
        for body in (check_canary, check_rate_limit, check_pause):
            checks.append(await _temporary(handle, settings, body))
    except (RedisError, OSError) as exc:
        checks.append(Check("redis", "fail", f"{type(exc).__name__}: {exc}"))
    finally:
        await handle.close()
    if channels is not None:
        checks += await channels()
    return checks
