"""What the queue's operations take and return, and the request ids that make a retried
call safe: shared by the producer side (:mod:`sluice.queue.queue`) and the worker side
(:mod:`sluice.queue.leasing`)."""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sluice.queue.job import Job

DAY_S = 86_400
DEFAULT_LEASE_MS = 5_000
DEFAULT_RATE_GUARD_MS = 20
RECOVER_PER_CALL = 50

ReserveStatus = Literal["ok", "paused", "rate"]


class _RequestIds:
    """Request ids: a random 64-bit prefix per process and a counter. Unique across
    processes and hosts for far longer than a record is kept (60 s), and cheaper than
    reading the OS's randomness on every call of the hot path; a forked child draws a
    prefix of its own."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self._prefix = secrets.token_hex(8) + "-"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


_request_ids = _RequestIds()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_request_ids.reseed)


def new_request_id() -> str:
    """A fresh id for one state-changing script call: a repeat of the call (redis-py
    re-sends a command whose reply was lost) is answered from the first one's record
    instead of acting twice (lua/lib/request_key.lua, replayed.lua, remember.lua)."""
    return _request_ids.next()


@dataclass(frozen=True, slots=True)
class EnqueueRequest:
    """One message for :meth:`Queue.enqueue_many`."""

    key: str
    payload: Any
    id: str | None = None
    priority: str = "normal"
    hops: Mapping[str, float] | None = None


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What enqueue did: the job id, and whether the message id had been seen before."""

    job_id: str
    duplicate: bool


@dataclass(slots=True)
class Reservation:
    """Jobs handed to a worker, or why none were (paused, rate-limited, nothing ready)."""

    status: ReserveStatus
    retry_after_ms: int
    jobs: list[Job] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Finished:
    """A completed job's durations and SLA verdict, as the completing script measured them."""

    job_id: str
    key: str
    queue_wait_ms: int
    processing_ms: int
    sla_ms: int
    verdict: Literal["ok", "warn", "crit"]


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished job as the worker acknowledges it."""

    job_id: str
    token: str
    marks: Mapping[str, float]
    notes: Mapping[str, str] = field(default_factory=dict)  # see Job.note


def as_text(value: object) -> str:
    """A Redis reply (bytes: the pool does not decode) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
