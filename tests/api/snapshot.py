"""What "a refused request changes nothing" compares: every Redis key of a queue with its
serialized value (jobs, lanes, dedupe and delivery markers, conversation state, live
settings, the paused flag, dashboard sessions and login counters, the rejected log).

Keys the API's background monitoring writes by itself, whatever the requests, are left out."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

# The API processes' own readings (sluice.api.process_metrics) are republished every few
# seconds whatever the requests: a fuzz case that spans a publish saw them "change".
BACKGROUND = ("mon:", "alerts:", "api:processes:")
Snapshot = dict[str, bytes | None]


def _prefix(queue_name: str) -> str:
    return f"sluice:{{{queue_name}}}:"


def redis_state(client: redis.Redis, queue_name: str, *, skip: tuple[str, ...] = ()) -> Snapshot:
    """The queue's keys and values (sync client), without background ones and ``skip``."""
    prefix = _prefix(queue_name)
    state: Snapshot = {}
    for key in client.scan_iter(match=prefix + "*", count=1000):
        name = key.decode()[len(prefix) :]
        if not name.startswith(BACKGROUND + skip):
            state[name] = client.dump(key)
    return state


async def redis_state_async(
    client: aioredis.Redis, queue_name: str, *, skip: tuple[str, ...] = ()
) -> Snapshot:
    """The same with an asyncio client."""
    prefix = _prefix(queue_name)
    state: Snapshot = {}
    async for key in client.scan_iter(match=prefix + "*", count=1000):
        name = key.decode()[len(prefix) :]
        if not name.startswith(BACKGROUND + skip):
            state[name] = await client.dump(key)
    return state


def without(state: Snapshot, skip: tuple[str, ...]) -> Snapshot:
    """``state`` without the keys starting with one of ``skip``."""
    return {k: v for k, v in state.items() if not k.startswith(skip)}
