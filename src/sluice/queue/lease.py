"""A running job's lease as its worker sees it: a fence, not a hope.

Redis holds the truth (the job's score in ``active``, compared with Redis ``TIME``); the
worker keeps a local copy on the monotonic clock that is never later than Redis's: it is
set from the moment a reservation or an extension was *sent* (Redis can only have
started the lease after that) plus the lease length, minus a margin for clock-rate
drift, and only a successful extension moves it. When it passes, the job may already
belong to another runner, so the handler is cancelled and every external effect is
refused (:meth:`Lease.check`). A wall clock is never used: a clock jump on the worker's
host cannot make an expired lease look alive.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from sluice.errors import LeaseLostError

# The local deadline is this much earlier than the lease could end in Redis, for clocks
# whose rates differ slightly and for the time between sending a call and Redis running it
# being unknown (it only makes the local copy more conservative).
DRIFT = 0.01
MARGIN_S = 0.05

Refs = list[tuple[str, str]]  # (job id, reservation token) of every job of a turn
# Confirms a turn in Redis (Queue.fence_turn). A lease keeps the turn's refs, never the
# job: a job refers to its lease, and a cycle between them would leave every job to the
# cycle collector, which costs throughput.
Fencer = Callable[[Refs, float], Awaitable[float]]


def local_deadline(sent_at: float, lease_ms: float) -> float:
    """The monotonic time by which a lease granted by a call sent at ``sent_at`` has
    surely not ended in Redis yet."""
    return sent_at + lease_ms / 1000 * (1 - DRIFT) - MARGIN_S


class Lease:
    """The local view of one run's lease (a turn: its leader and members share it)."""

    __slots__ = ("deadline", "fencer", "lost_reason", "refs", "token", "until_ms", "worker_id")

    def __init__(
        self, *, token: str, worker_id: str, deadline: float, fencer: Fencer, refs: Refs
    ) -> None:
        self.token = token
        self.worker_id = worker_id
        self.deadline = deadline
        self.fencer = fencer
        self.refs = refs
        self.lost_reason: str | None = None
        self.until_ms: float | None = None  # lease end in Redis as of the last fence

    @property
    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    @property
    def lost(self) -> bool:
        return self.lost_reason is not None or time.monotonic() >= self.deadline

    def extended(self, sent_at: float, lease_ms: float) -> None:
        """A call sent at ``sent_at`` (monotonic) renewed the lease by ``lease_ms``."""
        self.deadline = max(self.deadline, local_deadline(sent_at, lease_ms))

    def lose(self, reason: str) -> None:
        if self.lost_reason is None:
            self.lost_reason = reason

    def check(self) -> None:
        """Raise :class:`LeaseLostError` when the lease has passed or was lost."""
        if self.lost_reason is not None:
            raise LeaseLostError(f"lease lost: {self.lost_reason}")
        if time.monotonic() >= self.deadline:
            raise LeaseLostError("lease expired before the worker could renew it")

    async def fence(self, hold_ms: float) -> float:
        """Confirm the lease in Redis, record an effect in flight and extend the lease to
        cover ``hold_ms``; returns the lease's end in Redis (epoch ms)."""
        self.check()
        sent_at = time.monotonic()
        until_ms = await self.fencer(self.refs, hold_ms)
        self.extended(sent_at, hold_ms)
        self.until_ms = until_ms
        self.check()
        return until_ms
