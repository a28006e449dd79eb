"""What the worker's roles share: its slots, and the jobs on their way into and out of them.

The fetch loop (:mod:`sluice.worker.fetch`) fills the slots, the processor
(:mod:`sluice.worker.processor`) runs and empties them, the heartbeat
(:mod:`sluice.worker.heartbeat`) keeps their leases alive, the queue's controls
(:mod:`sluice.worker.control`) say whether they may start anything, and shutdown
(:mod:`sluice.worker.shutdown`) drains them. What more than one of them changes lives here
rather than in one of them, and whoever leaves work for the fetch loop (a completion to
acknowledge, a job to hand back, a freed slot) sets :attr:`Slots.changed` to wake it. All
of it runs on one event loop, so nothing here needs a lock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from sluice.queue.job import Job
from sluice.queue.lease import Lease
from sluice.queue.queue import Completion
from sluice.worker.prefetch import PrefetchBuffer

RunKey = tuple[str, str]  # (job id, reservation token)


@dataclass(eq=False, slots=True)
class Run:
    """One run of a job (a turn) on a slot. Keyed by (job id, token), so a stale run of a
    job that ends late can never touch the entry of a newer run of the same job."""

    job: Job
    lease: Lease
    task: asyncio.Task[None] | None = None
    started_at: float = field(default_factory=time.monotonic)


class Slots:
    """The worker's slots and what waits to go in or out of them (see the module docstring)."""

    __slots__ = (
        "buffer",
        "changed",
        "concurrency",
        "done",
        "hand_back",
        "live_rate_limit",
        "paused",
        "running",
        "started",
        "stopping",
        "unconfirmed",
    )

    def __init__(self, concurrency: int, buffer: PrefetchBuffer) -> None:
        self.concurrency = concurrency  # how many slots; the queue's live setting wins
        self.running: dict[RunKey, Run] = {}
        self.done: list[Completion] = []  # finished, to acknowledge with the next exchange
        # Prefetched jobs that started (and when), their attempts not charged yet: see
        # sluice.worker.fetch.CHARGE_AFTER_S. One that finishes first leaves it: its
        # acknowledgement carries the charge (complete.lua).
        self.started: dict[RunKey, tuple[Job, float]] = {}
        self.buffer = buffer  # reserved ahead, waiting for a free slot
        self.hand_back: list[Job] = []  # buffered jobs that may not start: release them
        self.unconfirmed: list[tuple[Job, Lease]] = []  # leases to renew before a start
        self.changed = asyncio.Event()  # the fetch loop has something to do
        self.stopping = False
        self.paused = False  # as last heard from Redis: no buffered job starts meanwhile
        self.live_rate_limit: int | None = None  # the queue's, when set: wins over ours

    def take_started(self, running_for_s: float = 0.0) -> list[Job]:
        """The started prefetched jobs whose charge is due: those running for at least
        ``running_for_s`` (all by default)."""
        if not running_for_s:
            started, self.started = self.started, {}
            return [job for job, _ in started.values()]
        since = time.monotonic() - running_for_s
        due = [key for key, (_, began) in self.started.items() if began <= since]
        return [self.started.pop(key)[0] for key in due]
