"""The worker registry: who is working on a queue, with how many slots, how busy.

Each worker writes its own record with a TTL of a few heartbeats, so a killed worker
disappears by itself; a sorted set indexes the records by last heartbeat so readers
never scan the keyspace.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from sluice.keys import QueueKeys
from sluice.redis.cluster import RedisClient

STALE_AFTER_S = 60.0


@dataclass(slots=True)
class WorkerInfo:
    """What a worker reports about itself at every heartbeat."""

    id: str
    host: str
    pid: int
    queue: str
    slots: int
    busy: int
    utilization: float
    throughput: float
    processed: int
    failed: int
    rate_limit: int
    started_at: float
    heartbeat_at: float


async def publish(
    client: RedisClient,
    keys: QueueKeys,
    info: WorkerInfo,
    ttl_ms: int,
    *,
    busy_ms: int | None = None,
    capacity_ms: int | None = None,
) -> None:
    """Write the worker's record; with ``busy_ms``/``capacity_ms`` also add its busy and
    available slot-time to the current monitoring bucket, from which every process reads
    the overall utilization of a window.

    The index and the bucket use Redis's clock, as the scripts do for every other bucket: a
    worker host whose clock is off would otherwise put its slot-time into another window and
    prune live workers from the index. Every publish also prunes the index of workers gone
    for ``STALE_AFTER_S`` (their records expired long ago), so it stays small whether or not
    anyone reads it."""
    seconds, micros = await client.time()
    now = int(seconds) + int(micros) / 1e6
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.worker(info.id), json.dumps(asdict(info)), px=ttl_ms)
    pipe.zadd(keys.workers, {info.id: now})
    pipe.zremrangebyscore(keys.workers, "-inf", now - STALE_AFTER_S)
    if busy_ms is not None and capacity_ms is not None:
        bucket = keys.mon_10s(int(now // 10))
        pipe.hincrby(bucket, "busy", busy_ms)
        pipe.hincrby(bucket, "cap", capacity_ms)
        pipe.expire(bucket, 7200)
    await pipe.execute()


async def withdraw(client: RedisClient, keys: QueueKeys, worker_id: str) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.delete(keys.worker(worker_id))
    pipe.zrem(keys.workers, worker_id)
    await pipe.execute()


async def live_workers(
    client: RedisClient, keys: QueueKeys, stale_after_s: float = STALE_AFTER_S
) -> list[dict[str, Any]]:
    """Records of workers seen recently; index entries older than ``stale_after_s`` (by
    Redis's clock) are pruned (their records have expired long ago)."""
    seconds, micros = await client.time()
    now = int(seconds) + int(micros) / 1e6
    await client.zremrangebyscore(keys.workers, "-inf", now - stale_after_s)
    ids = await client.zrange(keys.workers, 0, -1)
    if not ids:
        return []
    raw = await client.mget([keys.worker(_text(i)) for i in ids])
    return [json.loads(r) for r in raw if r]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
