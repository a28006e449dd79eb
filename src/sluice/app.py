"""Wiring a Sluice process from its settings: Redis, the queue, the worker."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as aioredis

from sluice.config import Settings, log_effective_profile
from sluice.queue.queue import Queue
from sluice.redis.pool import RedisHandle, connect
from sluice.worker.runtime import Handler, Worker

log = logging.getLogger("sluice")

DEFAULT_HANDLER = "pipeline"  # the Chatwoot reply pipeline (sluice.system)


@dataclass
class Runtime:
    """What one process holds: its Redis pool and the queue on top of it."""

    settings: Settings
    redis: RedisHandle
    queue: Queue


@asynccontextmanager
async def open_runtime(settings: Settings, url: str) -> AsyncIterator[Runtime]:
    """Open the process pool (its minimum connections pre-opened) and the queue."""
    log_effective_profile(settings, log)
    handle = await connect(
        url,
        pool_enabled=settings.redis_pool_enabled,
        min_connections=settings.redis_pool_min_connections,
        max_connections=settings.redis_pool_max_connections,
        wait_timeout_s=settings.redis_pool_timeout_s,
    )
    queue = queue_for(settings, handle.client)
    try:
        yield Runtime(settings=settings, redis=handle, queue=queue)
    finally:
        await handle.close()


def queue_for(settings: Settings, client: aioredis.Redis) -> Queue:
    """The configured queue on a client (the process pool)."""
    return Queue(
        settings.queue,
        redis=client,
        max_attempts=settings.max_attempts,
        completed_retention_s=settings.completed_retention_s,
        dedupe_ttl_s=settings.dedupe_ttl_s,
        sla_warning_ms=settings.sla_warning_threshold_ms,
        sla_critical_ms=settings.sla_critical_threshold_ms,
        monitoring=settings.monitoring_enabled,
    )


def build_worker(runtime: Runtime, handler: Handler, *, batch_size: int = 1) -> Worker:
    """A worker with the process's settings; the reply pipeline answers bursts in one turn
    (``batch_size`` = SLUICE_BURST_MAX), other handlers get one job at a time."""
    s = runtime.settings
    return Worker(
        runtime.queue,
        handler,
        concurrency=s.worker_concurrency,
        rate_limit=s.queue_rate_limit,
        lease_ms=s.lease_ms,
        heartbeat_ms=s.heartbeat_ms,
        shutdown_grace_s=s.shutdown_grace_s,
        batch_size=batch_size,
    )


def import_handler(path: str) -> Handler:
    """Load ``package.module:function``; a clear error when it is not there."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"handler {path!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import handler module {module_name!r}: {exc}") from exc
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise ValueError(f"{module_name!r} has no callable {attr!r}")
    return handler  # type: ignore[no-any-return]
