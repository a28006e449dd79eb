"""What one Sluice process holds: its Redis pool and the queue on top of it, opened from
the settings in one place so the API, the worker and the CLI connect the same way."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sluice.queue.queue import Queue
from sluice.redis.cluster import RedisClient
from sluice.redis.pool import RedisHandle, connect_from_settings
from sluice.settings.config import Settings, log_effective_profile

log = logging.getLogger("sluice")


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
    handle = await connect_from_settings(settings, url)
    queue = queue_for(settings, handle.client)
    try:
        yield Runtime(settings=settings, redis=handle, queue=queue)
    finally:
        await handle.close()


def queue_for(settings: Settings, client: RedisClient) -> Queue:
    """The configured queue on a client (the process pool)."""
    return Queue(
        settings.queue,
        redis=client,
        partitions=settings.partitions,
        max_attempts=settings.max_attempts,
        completed_retention_s=settings.completed_retention_s,
        dedupe_ttl_s=settings.dedupe_ttl_s,
        sla_warning_ms=settings.sla_warning_threshold_ms,
        sla_critical_ms=settings.sla_critical_threshold_ms,
        monitoring=settings.monitoring_enabled,
        wait_replicas=settings.enqueue_wait_replicas,
        wait_timeout_ms=settings.enqueue_wait_timeout_ms,
    )
