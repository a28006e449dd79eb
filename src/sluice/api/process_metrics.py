"""The readings only one API process has (its Redis pool, its spool counters), shared with
the other API processes of its host through Redis.

With `sluice serve --workers N` a scrape reaches whichever process accepts it. The
system's numbers are rendered from Redis and are the same from every process; these are
not, so each process writes its own into one hash per host (field: its pid) every
``PUBLISH_S`` and a scrape renders every process of the host that wrote within ``STALE_S``
(its own readings fresh). prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR)
would do the same through files, but only for its own metric objects, and Sluice renders
its families on each scrape. A host's hash expires on its own when all its processes are
gone; a process that stops removes its field.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from redis.exceptions import RedisError

from sluice.redis.cluster import RedisClient
from sluice.redis.pool import RedisHandle
from sluice.service.spool import SpoolStats

log = logging.getLogger("sluice.api")

PUBLISH_S = 5.0
STALE_S = 3 * PUBLISH_S
Readings = dict[str, Any]


def host_name() -> str:
    return socket.gethostname()


def readings(redis: RedisHandle, spool: SpoolStats | None) -> Readings:
    """This process's own readings, now."""
    return {
        "at": time.time(),
        "pool": redis.metrics().as_dict(),
        "spool": asdict(spool) if spool is not None else None,
    }


async def publish(client: RedisClient, key: str, own: Readings) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.hset(key, str(os.getpid()), json.dumps(own))
    pipe.expire(key, int(STALE_S * 4))
    await pipe.execute()


async def publish_forever(client: RedisClient, key: str, own: Callable[[], Readings]) -> None:
    """Publish this process's readings every ``PUBLISH_S`` until cancelled; remove them
    then (a Redis that does not answer only delays them: they go stale on their own)."""
    task = asyncio.current_task()
    try:
        while True:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(PUBLISH_S):
                    await publish(client, key, own())
            if task is not None and task.cancelling():
                # redis-py may turn the cancellation of a command into a connection error,
                # which the line above ignores: the request to stop must not be lost.
                raise asyncio.CancelledError
            await asyncio.sleep(PUBLISH_S)
    finally:
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(1):
                await client.hdel(key, str(os.getpid()))


async def host_processes(client: RedisClient, key: str, own: Readings) -> dict[str, Readings]:
    """Every API process of this host that published lately (pid → readings), this one's
    readings fresh; the fields of processes gone quiet are removed."""
    raw = await client.hgetall(key)
    now = time.time()
    found: dict[str, Readings] = {}
    stale = []
    for field, value in raw.items():
        pid = field.decode() if isinstance(field, bytes) else str(field)
        try:
            data = json.loads(value)
        except ValueError:
            stale.append(pid)
            continue
        if now - float(data.get("at", 0)) > STALE_S:
            stale.append(pid)
        else:
            found[pid] = data
    if stale:
        await client.hdel(key, *stale)
    found[str(os.getpid())] = own
    return found
