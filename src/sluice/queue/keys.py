"""Redis key layout of one queue.

Every key of a queue starts with ``sluice:{name}:``; the braces are a Redis Cluster hash
tag, so a whole queue lives in one slot and every Lua script may touch all of its keys.
The fixed keys are passed to every script in one vector (documented in
``lua/lib/core.lua``); per-job and per-lane keys are derived from the prefix inside Lua.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_VALID_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")

FIXED_KEYS = (
    "ready",
    "delayed",
    "inflight",
    "active",
    "waiting",
    "dead",
    "completed",
    "meta",
    "rate",
    "wake",
    "events",
    "seq",
    "control",
)


@dataclass(frozen=True)
class QueueKeys:
    """Names of one queue's keys, in the order the Lua scripts expect them."""

    name: str
    prefix: str = field(init=False)
    vector: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not _VALID_NAME.match(self.name):
            raise ValueError(
                f"queue name {self.name!r} must be 1-100 characters of letters, digits, "
                "'_', '.', ':' or '-'"
            )
        prefix = f"sluice:{{{self.name}}}:"
        object.__setattr__(self, "prefix", prefix)
        object.__setattr__(self, "vector", tuple(prefix + k for k in FIXED_KEYS))

    def __getattr__(self, item: str) -> str:
        # Only reached for names that are not real attributes: the fixed key names.
        if item in FIXED_KEYS:
            return self.prefix + item
        raise AttributeError(item)

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def payload(self, job_id: str) -> str:
        return f"{self.prefix}payload:{job_id}"

    def lane(self, conversation: str) -> str:
        return f"{self.prefix}lane:{conversation}"

    def dedupe(self, message_id: str) -> str:
        return f"{self.prefix}dedupe:{message_id}"

    def request(self, request_id: str) -> str:
        """Where a script keeps the answer of a call (see lua/lib/request.lua)."""
        return f"{self.prefix}req:{request_id}"

    def stats(self, unix_second: int) -> str:
        return f"{self.prefix}stats:{unix_second}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}"

    @property
    def workers(self) -> str:
        return self.prefix + "workers"

    # Monitoring buckets: the Lua scripts write them (lua/lib/monitor.lua, rollup.lua) and
    # sluice.monitor reads them. Spelled only here on the Python side, so a reader and the
    # writers cannot drift apart on a key name.

    def mon_10s(self, index: int) -> str:
        """One 10-second bucket of monitoring counters; ``index`` is unix seconds // 10."""
        return f"{self.prefix}mon:10s:{index}"

    def mon_1m(self, index: int) -> str:
        """The roll-up of one finished minute; ``index`` is unix seconds // 60."""
        return f"{self.prefix}mon:1m:{index}"

    @property
    def mon_total(self) -> str:
        """All-time counters and fixed histogram buckets (what /metrics exports)."""
        return self.prefix + "mon:total"

    @property
    def mon_rolled_until(self) -> str:
        """The last minute already rolled up into ``mon:1m:``, so roll-ups are idempotent."""
        return self.prefix + "mon:rolled_until"
