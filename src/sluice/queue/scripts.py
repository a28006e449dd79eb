"""The queue's Lua scripts: one file per state change in ``lua/``, helpers in ``lua/lib/``.

Assembled by the package's one Lua loader, :mod:`sluice.redis.lua` (``--!include`` lines,
expanded recursively), so each script stays a single atomic EVALSHA while the helpers are
written once.
"""

from __future__ import annotations

from typing import Any

from redis.commands.core import AsyncScript

from sluice.redis import lua
from sluice.redis.cluster import RedisClient

SCRIPT_NAMES = (
    "enqueue",
    "enqueue_batch",
    "reserve",
    "complete",
    "fail",
    "extend",
    "fence",
    "release",
    "pause",
    "drain",
    "cancel",
    "counts",
    "retry_dead",
    "purge_dead",
    "rollup",
    "limiter",
    "layout",
    "fairness",
)

PACKAGE = "sluice.queue"


def script_source(name: str) -> str:
    """The full source of one script with its includes expanded."""
    return lua.script_source(PACKAGE, name)


class Scripts:
    """The registered scripts of one client, callable as ``scripts.enqueue(keys, args)``."""

    def __init__(self, client: RedisClient) -> None:
        self._scripts: dict[str, AsyncScript] = lua.register_scripts(client, PACKAGE, SCRIPT_NAMES)

    def __getattr__(self, name: str) -> AsyncScript:
        try:
            return self._scripts[name]
        except KeyError:
            raise AttributeError(name) from None

    async def load_all(self, client: RedisClient) -> dict[str, str]:
        """Load every script now (readiness checks, `validate`); returns name -> SHA."""
        shas: dict[str, str] = {}
        for name, script in self._scripts.items():
            sha: Any = await client.script_load(script.script)
            shas[name] = sha.decode() if isinstance(sha, bytes) else str(sha)
        return shas
