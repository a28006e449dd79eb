"""The prefetch buffer: jobs reserved before a slot is free, so a freed slot starts the next
job without waiting a round trip to Redis.

A buffered job is already leased to this worker, so the buffer must obey the queue as if
its jobs were still waiting there. The rules (docs/engine.md, "Prefetch"):

- **Earliest deadline first**: the buffer hands out its job with the earliest deadline.
- **Bounded by time**: a job starts at most ``hold_s`` after it was reserved, or it goes
  back to its lane (no attempt charged, its deadline kept). So a pause, a drain or a more
  urgent arrival that the worker has not heard of yet can be overtaken by buffered jobs for
  at most ``hold_s``.
- **Revocable**: on pause, drain or a live rate limit every buffered job goes back at once;
  on a cancel, that conversation's job does (the worker hears these on the queue's control
  channel, see :mod:`sluice.worker.control`).
"""

from __future__ import annotations

import bisect
import operator
import time
from dataclasses import dataclass, field

from sluice.queue.job import Job
from sluice.queue.lease import Lease

DEFAULT_HOLD_S = 0.25


@dataclass(eq=False, slots=True)
class Buffered:
    job: Job
    lease: Lease
    reserved_at: float  # monotonic time the reservation was sent
    deadline: float = field(init=False)  # the job's deadline (epoch ms), inf when it has none

    def __post_init__(self) -> None:
        deadline = self.job.deadline_ms
        self.deadline = deadline if deadline is not None else float("inf")


_by_deadline = operator.attrgetter("deadline")


class PrefetchBuffer:
    def __init__(self, hold_s: float = DEFAULT_HOLD_S) -> None:
        if hold_s <= 0:
            raise ValueError(f"prefetch hold must be positive, got {hold_s}")
        self.hold_s = hold_s
        self._entries: list[Buffered] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def add(self, job: Job, lease: Lease, reserved_at: float) -> None:
        # Kept in deadline order, so a freed slot takes the front (no scan per start).
        bisect.insort(self._entries, Buffered(job, lease, reserved_at), key=_by_deadline)

    def entries(self) -> list[Buffered]:
        return list(self._entries)

    def pop_next(self) -> tuple[Buffered | None, list[Buffered]]:
        """The fresh job with the earliest deadline (None when there is none), and the
        entries passed over on the way that may no longer start (held too long, or lease
        gone) to hand back. Runs for every job a freed slot starts: one clock read, and the
        front of a list already in deadline order (stale entries further back are found by
        :meth:`take_stale`, which the heartbeat calls)."""
        expired: list[Buffered] = []
        if not self._entries:
            return None, expired
        now = time.monotonic()
        while self._entries:
            entry = self._entries.pop(0)
            if not self._stale(entry, now):
                return entry, expired
            expired.append(entry)
        return None, expired

    def take_stale(self) -> list[Buffered]:
        """Every entry that may no longer start, wherever it is in the buffer."""
        now = time.monotonic()
        stale = [e for e in self._entries if self._stale(e, now)]
        if stale:
            self._entries = [e for e in self._entries if not self._stale(e, now)]
        return stale

    def take_all(self) -> list[Buffered]:
        taken, self._entries = self._entries, []
        return taken

    def take_conversation(self, key: str) -> list[Buffered]:
        taken = [e for e in self._entries if e.job.key == key]
        self._entries = [e for e in self._entries if e.job.key != key]
        return taken

    def forget(self, job_ids: set[str]) -> None:
        """Drop entries whose jobs are no longer ours (Redis said so)."""
        self._entries = [
            e for e in self._entries if not any(m.id in job_ids for m in e.job.members)
        ]

    def _stale(self, entry: Buffered, now: float) -> bool:
        lease = entry.lease
        return (
            now - entry.reserved_at >= self.hold_s
            or lease.lost_reason is not None
            or now >= lease.deadline
        )
