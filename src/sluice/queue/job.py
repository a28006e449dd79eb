"""A reserved job as a handler sees it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any


def now_ms() -> float:
    """Wall-clock epoch milliseconds, the unit of every hop timestamp."""
    return time.time() * 1000.0


@dataclass(slots=True)
class Job:
    """One message in flight: its identity, payload, attempt and hop timeline.

    ``hops`` maps hop names (``enqueued``, ``reserved``, ...) to epoch milliseconds.
    Handlers add their own hops with :meth:`mark`; they are stored with the job when it
    completes or fails.
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
    deadline_ms: float | None = None
    last_error: str | None = None
    leader_id: str | None = None
    batch: list[Job] = field(default_factory=list)
    reservations: int = 1  # times ever reserved (not reset by a hand-back or a DLQ retry)

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
        if not hop or ":" in hop:
            raise ValueError(f"hop name {hop!r} must be non-empty and contain no ':'")
        value = now_ms() if at_ms is None else at_ms
        self.marks[hop] = value
        self.hops[hop] = value
        return value

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
        return cls(
            id=data[b"id"].decode(),
            key=data[b"key"].decode(),
            payload=json.loads(data[b"payload"]),
            attempt=int(data[b"attempt"]),
            max_attempts=int(data[b"max"]),
            priority=data[b"prio"].decode(),
            message_id=mid.decode() or None,
            token=data.get(b"token", b"").decode(),
            hops=hops,
            deadline_ms=float(deadline) if deadline else None,
            last_error=err.decode() if err else None,
            leader_id=leader.decode() if leader else None,
            reservations=int(data.get(b"rsv", b"1")),
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
        }
