"""Replaying dead letters in bulk, by what they have in common: the error they died of, when
they died, their conversation, the broker that last handled them.

After an outage (a model endpoint down, a bad deploy) the dead letters of that window are
the ones worth another try, and typing their ids one by one does not scale. A dry run
counts what a filter selects before anything moves; the replay itself requeues each match
with :meth:`~sluice.queue.queue.Queue.retry_dead` (one atomic script per job, so a job a
worker or another operator retried meanwhile is skipped, never duplicated).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sluice.queue.job import JobRecord

PAGE = 500  # dead letters read per round trip while filtering
_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class DeadLetters(Protocol):
    """What a replay needs of a queue (a :class:`~sluice.queue.queue.Queue`, partitioned or
    not)."""

    async def dead_letters(self, limit: int = 100, offset: int = 0) -> list[JobRecord]: ...

    async def retry_dead(self, job_id: str) -> bool: ...


def parse_moment(text: str, *, now: datetime | None = None) -> float:
    """A point in time as epoch milliseconds: ``30m``/``2h``/``1d`` ago, or an ISO 8601
    date-time (UTC when it names no offset). ``ValueError`` says which forms are accepted."""
    now = now or datetime.now(UTC)
    match = _AGO.match(text.strip())
    if match:
        ago = timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])
        return (now - ago).timestamp() * 1000
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use a duration ago (90s, 30m, 2h, 1d) or ISO 8601 "
            "(2026-12-06T10:00, with an offset or UTC)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters to select; every given criterion must hold, none given selects
    all. ``error`` is a case-insensitive substring of the last error; ``since_ms`` and
    ``until_ms`` bound when the job died (epoch ms, inclusive); ``broker`` is the broker
    noted on the job's last run."""

    error: str | None = None
    since_ms: float | None = None
    until_ms: float | None = None
    conversation: str | None = None
    broker: str | None = None

    def __post_init__(self) -> None:
        since, until = self.since_ms, self.until_ms
        if since is not None and until is not None and since > until:
            raise ValueError("since is after until: the window selects nothing")

    def matches(self, record: JobRecord) -> bool:
        if self.error is not None and self.error.lower() not in (record.error or "").lower():
            return False
        died = record.hops.get("dead")
        if self.since_ms is not None and (died is None or died < self.since_ms):
            return False
        if self.until_ms is not None and (died is None or died > self.until_ms):
            return False
        if self.conversation is not None and record.key != self.conversation:
            return False
        return self.broker is None or record.notes.get("broker") == self.broker


@dataclass
class Replay:
    """What a replay selected and, unless it was a dry run, what it requeued."""

    matched: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # no longer dead when its turn came
    dry_run: bool = True

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "matched": len(self.matched),
            "requeued": len(self.requeued),
            "skipped": len(self.skipped),
            "ids": self.matched,
        }


async def select(queue: DeadLetters, flt: DeadLetterFilter) -> list[JobRecord]:
    """Every dead letter the filter selects, newest first. The whole dead-letter set is read
    page by page (it is bounded by purges and retention, and this runs on an operator's
    request, never on a hot path)."""
    found: list[JobRecord] = []
    offset = 0
    while True:
        page: Sequence[JobRecord] = await queue.dead_letters(PAGE, offset)
        found.extend(r for r in page if flt.matches(r))
        if len(page) < PAGE:
            return found
        offset += PAGE


async def replay(queue: DeadLetters, flt: DeadLetterFilter, *, dry_run: bool) -> Replay:
    """Select with ``flt`` and, unless ``dry_run``, requeue every match with fresh
    attempts. Selection happens first, so jobs that die while the replay runs are not
    picked up by it (run it again for those)."""
    result = Replay(matched=[r.id for r in await select(queue, flt)], dry_run=dry_run)
    if dry_run:
        return result
    return await requeue(queue, result)


async def requeue(queue: DeadLetters, selected: Replay) -> Replay:
    """Requeue exactly the dead letters ``selected`` matched (a dry run's), not what the
    filter selects by now: what an operator confirmed is what is replayed."""
    result = Replay(matched=list(selected.matched), dry_run=False)
    for job_id in result.matched:
        (result.requeued if await queue.retry_dead(job_id) else result.skipped).append(job_id)
    return result
