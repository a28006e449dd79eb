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

import time
from dataclasses import dataclass

from sluice.queue.job import Job
from sluice.queue.lease import Lease

DEFAULT_HOLD_S = 0.25


@dataclass(eq=False, slots=True)
class Buffered:
    job: Job
    lease: Lease
    reserved_at: float  # monotonic time the reservation was sent

    @property
    def deadline(self) -> float:
        return self.job.deadline_ms if self.job.deadline_ms is not None else float("inf")


class PrefetchBuffer:
    def __init__(self, hold_s: float = DEFAULT_HOLD_S) -> None:
        if hold_s <= 0:
            raise ValueError(f"prefetch hold must be positive, got {hold_s}")
        self.hold_s = hold_s
        self._entries: list[Buffered] = []

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, job: Job, lease: Lease, reserved_at: float) -> None:
        self._entries.append(Buffered(job, lease, reserved_at))

    def entries(self) -> list[Buffered]:
        return list(self._entries)

    def pop_next(self) -> tuple[Buffered | None, list[Buffered]]:
        """The fresh job with the earliest deadline (None when there is none), and the
        entries that may no longer start (held too long, or lease gone) to hand back. One
        pass and one clock read: this runs for every job a freed slot starts."""
        if not self._entries:
            return None, []
        now = time.monotonic()
        expired: list[Buffered] = []
        best: Buffered | None = None
        for entry in self._entries:
            if self._stale(entry, now):
                expired.append(entry)
            elif best is None or entry.deadline < best.deadline:
                best = entry
        if expired:
            self._entries = [e for e in self._entries if not self._stale(e, now)]
        if best is not None:
            self._entries.remove(best)
        return best, expired

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
