"""A leader lease in Redis: exactly one alert evaluator acts at a time.

Every process may run an evaluator (workers, the API, ``sluice up``), but alerts must be
evaluated and sent once, not once per process. The lease is one key holding the holder's
id with a TTL: taken with SET NX PX, kept alive by renewing it more often than the TTL,
and taken over by someone else when a dead leader stops renewing it.

Every change is a compare-and-act Lua script (``lua/lease_*.lua``), so a process that lost
its lease (paused by GC, cut off, slow) can never renew or delete the lease of the new
leader. The lease also keeps a *local* deadline, started before each successful request:
the Redis TTL runs from when Redis executed the command, which is later, so while
:attr:`LeaderLease.held` is true no other process can hold the lease.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from redis.commands.core import AsyncScript

from sluice.redis import lua
from sluice.redis.cluster import RedisClient

__all__ = ["LEASE_SCRIPTS", "LeaderLease", "default_holder", "lease_script_source"]

LEASE_SCRIPTS = ("lease_acquire", "lease_renew", "lease_release")


def lease_script_source(name: str) -> str:
    """The source of one of the lease scripts (``lua/<name>.lua`` of ``sluice.monitor``), as
    the package's one Lua loader, :mod:`sluice.redis.lua`, assembles it."""
    if name not in LEASE_SCRIPTS:
        raise KeyError(name)
    return lua.script_source("sluice.monitor", name)


def default_holder() -> str:
    """An id unique per process *start*: host, pid and a random suffix.

    The random part matters: a restarted process may get the same pid, and must not
    mistake the lease of its previous life for its own.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaderLease:
    """One process's handle on the lease stored at ``key``."""

    def __init__(
        self,
        redis: RedisClient,
        key: str,
        holder: str,
        ttl_ms: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_ms < 1:
            raise ValueError("ttl_ms must be at least 1")
        if not holder:
            raise ValueError("holder must not be empty")
        self.redis = redis
        self.key = key
        self.holder_id = holder
        self.ttl_ms = ttl_ms
        self._clock = clock
        self._valid_until = 0.0
        self._scripts: dict[str, AsyncScript] = lua.register_scripts(
            redis, "sluice.monitor", LEASE_SCRIPTS
        )

    @property
    def held(self) -> bool:
        """Whether this process may act as leader *now*, by its own clock.

        False as soon as the TTL since the last successful acquire or renew has passed,
        even before the next renew tells us so: a leader must not act on a lease that may
        already belong to someone else.
        """
        return self._clock() < self._valid_until

    async def acquire(self) -> bool:
        """Take the lease if free, or extend it if it is already ours."""
        return await self._run("lease_acquire", self.holder_id, self.ttl_ms)

    async def renew(self) -> bool:
        """Extend the lease if we still hold it; False means leadership is lost."""
        return await self._run("lease_renew", self.holder_id, self.ttl_ms)

    async def release(self) -> bool:
        """Give the lease up (if ours) so another process takes over without waiting."""
        self._valid_until = 0.0
        result: Any = await self._scripts["lease_release"](keys=[self.key], args=[self.holder_id])
        return int(result) == 1

    async def holder(self) -> str | None:
        """The current holder's id, or None when nobody holds the lease."""
        value: Any = await self.redis.get(self.key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def _run(self, script: str, *args: str | int) -> bool:
        started = self._clock()
        try:
            result: Any = await self._scripts[script](keys=[self.key], args=list(args))
        except BaseException:
            self._valid_until = 0.0  # unknown outcome: assume the worst
            raise
        ok = int(result) == 1
        self._valid_until = started + self.ttl_ms / 1000 if ok else 0.0
        return ok
