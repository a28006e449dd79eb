"""A reserved job as a handler sees it."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.queue.lease import Lease

# How long a fence holds the lease by default: the Chatwoot client's 10 s request timeout
# and a little more, so a POST can end before anyone else may run the turn.
DEFAULT_FENCE_HOLD_MS = 12_000


_HOP_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# A note's value is a short name (a broker's name fits): the completion scripts take notes
# packed with the hops, so ',', ';' and '=' never occur in one.
_NOTE_VALUE = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")


def check_hop_name(hop: str) -> str:
    """A hop name is letters, digits, '_', '.' and '-' (the scripts take hops packed as
    ``name=ms;name=ms``); anything else is refused with a clear error."""
    if not isinstance(hop, str) or not _HOP_NAME.fullmatch(hop):
        raise ValueError(f"hop name {hop!r} must be letters, digits, '_', '.' or '-'")
    return hop


def check_note(name: str, value: str) -> tuple[str, str]:
    """A note is a hop-like name and a short value (letters, digits, '_', '.', ':', '@',
    '-'; at most 64 characters); anything else is refused with a clear error."""
    check_hop_name(name)
    if not isinstance(value, str) or not _NOTE_VALUE.fullmatch(value):
        raise ValueError(
            f"note value {value!r} must be 1-64 letters, digits, '_', '.', ':', '@' or '-'"
        )
    return name, value


def now_ms() -> float:
    """Wall-clock epoch milliseconds, the unit of every hop timestamp."""
    return time.time() * 1000.0


@dataclass(slots=True)
class Job:
    """One message in flight: its identity, payload, attempt and hop timeline.

    ``hops`` maps hop names (``enqueued``, ``reserved``, ...) to epoch milliseconds.
    Handlers add their own hops with :meth:`mark`, and facts about the run with
    :meth:`note` (which broker answered); both are stored with the job when it completes
    or fails.
    """

    id: str
    key: str
    payload: Any
    attempt: int
    max_attempts: int
    priority: str
    message_id: str | None
    token: str
    hops: dict[str, float] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    deadline_ms: float | None = None
    last_error: str | None = None
    leader_id: str | None = None
    batch: list[Job] = field(default_factory=list)
    reservations: int = 1  # times ever reserved (not reset by a hand-back or a DLQ retry)
    prefetched: bool = False  # reserved into a prefetch buffer; its attempt is charged at start
    fenced_by: str | None = None  # token of an earlier run that fenced an effect (see fence)
    lease: Lease | None = None  # set by the worker while the job runs
    traceparent: str | None = None  # its creation context, when enqueued with tracing on

    @property
    def members(self) -> list[Job]:
        """The jobs answered together in this turn, in conversation order (a batch of a
        burst, else just this job)."""
        return self.batch or [self]

    @property
    def payloads(self) -> list[Any]:
        return [member.payload for member in self.members]

    def mark(self, hop: str, at_ms: float | None = None) -> float:
        """Record that this job reached ``hop`` now (or at ``at_ms``)."""
        check_hop_name(hop)
        value = now_ms() if at_ms is None else at_ms
        self.marks[hop] = value
        self.hops[hop] = value
        return value

    def note(self, name: str, value: str) -> None:
        """Record a fact about this run, such as ``note("broker", "template-bot")``; it is
        stored with the job (``n:<name>`` in its hash) and shown on its timeline."""
        check_note(name, value)
        self.notes[name] = value

    async def guard(self) -> None:
        """Raise :class:`~sluice.errors.LeaseLostError` when this run's lease has passed.

        Cheap (no round trip): call it before any external effect. A run whose lease
        passed may share the job with a newer runner, so it must not act; the worker
        cancels it too, but only at its next ``await``. Outside a worker it does nothing."""
        if self.lease is not None:
            self.lease.check()

    async def fence(self, hold_ms: float = DEFAULT_FENCE_HOLD_MS) -> float:
        """Confirm in Redis, atomically, that this run still holds the lease of every job
        of its turn, record that an effect is in flight, and extend the lease to at least
        ``hold_ms`` from now. Returns the lease's end (epoch ms, Redis clock).

        Call it right before an effect that must not happen twice (posting a reply) and
        bound the effect by the lease it returns: no other runner can take the turn before
        then, and one that takes it afterwards sees :attr:`fenced_by` and knows to look
        for the effect first. Raises :class:`~sluice.errors.LeaseLostError` when the lease
        is gone. Outside a worker it does nothing and returns 0."""
        if self.lease is None:
            return 0.0
        return await self.lease.fence(hold_ms)

    @property
    def fenced_before(self) -> bool:
        """Whether an earlier run of this turn fenced an effect: it may have happened."""
        return any(m.fenced_by is not None for m in self.members)

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    @classmethod
    def from_fields(cls, flat: list[bytes]) -> Job:
        """Build from a job hash as HGETALL returns it inside a script (a flat list)."""
        data = dict(zip(flat[0::2], flat[1::2], strict=True))
        hops = {k[2:].decode(): float(v) for k, v in data.items() if k.startswith(b"h:")}
        deadline = data.get(b"deadline")
        err = data.get(b"err")
        mid = data.get(b"mid", b"")
        leader = data.get(b"batch")
        token = data.get(b"token", b"").decode()
        fence = data.get(b"fence", b"").decode()
        tp = data.get(b"tp")
        return cls(
            id=data[b"id"].decode(),
            key=data[b"key"].decode(),
            payload=json.loads(data[b"payload"]),
            attempt=int(data[b"attempt"]),
            max_attempts=int(data[b"max"]),
            priority=data[b"prio"].decode(),
            message_id=mid.decode() or None,
            token=token,
            hops=hops,
            deadline_ms=float(deadline) if deadline else None,
            last_error=err.decode() if err else None,
            leader_id=leader.decode() if leader else None,
            reservations=int(data.get(b"rsv", b"1")),
            prefetched=data.get(b"pf") == b"1",
            fenced_by=fence if fence and fence != token else None,
            traceparent=tp.decode() if tp else None,
        )


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A stored job as read back for inspection (dead letters, timelines)."""

    id: str
    key: str
    state: str
    attempt: int
    max_attempts: int
    priority: str
    message_id: str | None
    payload: Any
    hops: dict[str, float]
    error: str | None
    notes: dict[str, str] = field(default_factory=dict)
    # The turn's deadline (Redis clock, epoch ms; None before the job heads its lane) and
    # the SLA target it counts when it becomes a head (ms).
    deadline_ms: float | None = None
    target_ms: int | None = None

    @classmethod
    def from_hash(cls, data: dict[bytes, bytes], raw: bytes | None) -> JobRecord:
        """From a job hash and its payload (None once the job completed: a completed job
        keeps its timeline, not its payload)."""
        mid = data.get(b"mid", b"").decode()
        err = data.get(b"err")
        return cls(
            id=data[b"id"].decode(),
            key=data[b"key"].decode(),
            state=data.get(b"state", b"").decode(),
            attempt=int(data.get(b"attempt", b"0")),
            max_attempts=int(data.get(b"max", b"0")),
            priority=data.get(b"prio", b"").decode(),
            message_id=mid or None,
            payload=json.loads(raw) if raw else None,
            hops={k[2:].decode(): float(v) for k, v in data.items() if k.startswith(b"h:")},
            error=err.decode() if err else None,
            notes={k[2:].decode(): v.decode() for k, v in data.items() if k.startswith(b"n:")},
            deadline_ms=float(data[b"deadline"]) if data.get(b"deadline") else None,
            target_ms=int(float(data[b"target"])) if data.get(b"target") else None,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "state": self.state,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "priority": self.priority,
            "message_id": self.message_id,
            "payload": self.payload,
            "hops": self.hops,
            "error": self.error,
            "notes": self.notes,
            "deadline_ms": self.deadline_ms,
            "target_ms": self.target_ms,
        }
