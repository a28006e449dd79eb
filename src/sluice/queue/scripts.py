"""Loading the Lua scripts: one file per state change, shared helpers included textually.

A line ``--!include lib/x.lua`` is replaced by that file, so each script stays a single
atomic EVALSHA while the helpers are written once. redis-py's ``Script`` objects run them
by SHA and reload them transparently after a ``SCRIPT FLUSH`` or a Redis restart.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

SCRIPT_NAMES = (
    "enqueue",
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
)

_INCLUDE = "--!include "


@cache
def script_source(name: str) -> str:
    """The full source of one script with its includes expanded."""
    root = resources.files("sluice.queue") / "lua"
    lines: list[str] = []
    for line in (root / f"{name}.lua").read_text(encoding="utf-8").splitlines():
        if line.startswith(_INCLUDE):
            lines.append((root / line[len(_INCLUDE) :].strip()).read_text(encoding="utf-8"))
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


class Scripts:
    """The registered scripts of one client, callable as ``scripts.enqueue(keys, args)``."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }

    def __getattr__(self, name: str) -> AsyncScript:
        try:
            return self._scripts[name]
        except KeyError:
            raise AttributeError(name) from None

    async def load_all(self, client: aioredis.Redis) -> dict[str, str]:
        """Load every script now (readiness checks, `validate`); returns name -> SHA."""
        shas: dict[str, str] = {}
        for name, script in self._scripts.items():
            sha: Any = await client.script_load(script.script)
            shas[name] = sha.decode() if isinstance(sha, bytes) else str(sha)
        return shas
