"""The two profiles and the live rollback between them.

``legacy`` is the system Sluice replaces (3 slots, 10 jobs/s, no pool); ``optimized`` is
Sluice's defaults. Switching live writes the concurrency and rate limit overrides into
Redis, which every worker applies within two seconds — a rollback needs no redeploy.
(The connection pool size is the one thing that needs a restart: QUEUE_OPTIMIZATION_ENABLED.)
"""

from __future__ import annotations

from typing import Literal

from sluice.queue.queue import Queue

Profile = Literal["optimized", "legacy"]
LEGACY_CONCURRENCY = 3
LEGACY_RATE_LIMIT = 10


async def switch_profile(queue: Queue, profile: Profile) -> None:
    if profile == "legacy":
        await queue.set_concurrency(LEGACY_CONCURRENCY)
        await queue.set_rate_limit(LEGACY_RATE_LIMIT)
    else:
        await queue.set_concurrency(None)
        await queue.set_rate_limit(None)
    await queue.redis.hset(queue.keys.meta, "profile", profile)


async def live_profile(queue: Queue) -> Profile | None:
    """The profile last switched to live, or None when none was (the settings decide)."""
    raw = await queue.redis.hget(queue.keys.meta, "profile")
    if raw == b"legacy":
        return "legacy"
    if raw == b"optimized":
        return "optimized"
    return None
