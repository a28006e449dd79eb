"""Did Sluice keep its promise? Pure functions over a recorded run (see model.py).

The checks, each reporting violations that name the messages, jobs and conversation:

- **accounting**: every accepted message (a 2xx on some webhook attempt) is covered by
  exactly one reply (its job id inside the reply's ``sluice_reply_id`` range), or its job is
  dead with a recorded reason, or it was handed off / skipped; anything else is *lost*, more
  than one covering reply is a *duplicate*;
- **order**: a conversation's reply ranges strictly increase in the order Chatwoot stored
  them;
- **no stale effect**: a reply's ``sluice_run`` names the runner and the lease it held; the
  reply is stale if Chatwoot stored it more than ``tolerance_s`` after that lease ended, or
  after one of its jobs was reserved again under another token (someone else owned it by
  then). Replies without ``sluice_run`` are *unfenced*: counted, and a violation when the
  run expects fencing;
- **no dead letter without a run**: a dead job must have run at least once: a ``reserved``
  event without the prefetch flag, or a ``started`` event. A job that was only ever
  reserved into prefetch buffers and expired there used up attempts it never had.

The tolerance covers the time an HTTP request takes from the runner's last look at its
lease to Chatwoot storing the message; anything later is an effect nobody owned.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from .model import Event, FaultEvent, Incoming, Observation, Reply, parse_run

TOLERANCE_S = 0.25


@dataclass(frozen=True)
class Violation:
    kind: str  # lost, duplicate, order, stale, unfenced, dead_without_run, ...
    detail: str
    conversation: int | None = None
    messages: tuple[int, ...] = ()
    jobs: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = [f"conversation {self.conversation}"] if self.conversation is not None else []
        if self.messages:
            where.append(f"messages {list(self.messages)}")
        if self.jobs:
            where.append(f"jobs {list(self.jobs)}")
        return f"{self.kind}: {self.detail} ({', '.join(where)})"


@dataclass
class CheckResult:
    """The figures of one run and everything that broke the promise."""

    sent: int = 0
    accepted: int = 0
    replied: int = 0
    dead: int = 0
    handed_off: int = 0
    lost: int = 0
    duplicates: int = 0
    order_violations: int = 0
    stale: int = 0
    unfenced: int = 0
    fenced: int = 0  # replies whose run and lease were checked
    prefetched: int = 0  # reservations into a prefetch buffer (the runs that may never run)
    dead_without_run: int = 0
    replies_posted: int = 0
    events_recorded: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def violation_kinds(self) -> Counter[str]:
        return Counter(v.kind for v in self.violations)

    def line(self, label: str) -> str:
        faults = ", ".join(f"{k}={n}" for k, n in sorted(self.faults.items()))
        return (
            f"[{label}] faults={sum(self.faults.values())} ({faults}) sent={self.sent} "
            f"accepted={self.accepted} replied={self.replied} dead={self.dead} "
            f"handed_off={self.handed_off} lost={self.lost} duplicates={self.duplicates} "
            f"order_violations={self.order_violations} stale={self.stale} "
            f"unfenced={self.unfenced} dead_without_run={self.dead_without_run} "
            f"replies_posted={self.replies_posted} fenced={self.fenced} "
            f"prefetched={self.prefetched} events={self.events_recorded} "
            f"violations={dict(self.violation_kinds())}"
        )

    def report(self, label: str, per_kind: int = 8) -> str:
        """The figures line and the first ``per_kind`` violations of each kind, one per
        line (a flood of one kind must not hide the others)."""
        lines = [self.line(label)]
        for kind, total in self.violation_kinds().items():
            shown = [v for v in self.violations if v.kind == kind][:per_kind]
            lines += [f"  {v}" for v in shown]
            if total > len(shown):
                lines.append(f"  ... and {total - len(shown)} more {kind}")
        return "\n".join(lines)


def check(
    history: Sequence[Event],
    observed: Observation,
    faults: Sequence[FaultEvent] = (),
    *,
    expect_fencing: bool = True,
    tolerance_s: float = TOLERANCE_S,
) -> CheckResult:
    """Every check over one run; ``faults`` are only counted (and named near violations)."""
    result = CheckResult(events_recorded=len(history), faults=Counter(f.kind for f in faults))
    for gap in observed.history_gaps:
        result.violations.append(Violation("history_gap", gap))
    check_accounting(observed, result, faults)
    check_order(observed, result, faults)
    check_fencing(history, observed, faults, result, expect_fencing, tolerance_s)
    check_dead_letters(history, observed, result)
    return result


def check_accounting(
    observed: Observation, result: CheckResult, faults: Sequence[FaultEvent] = ()
) -> None:
    marked = {
        conversation: [r for r in replies if r.covers is not None]
        for conversation, replies in observed.replies.items()
    }
    result.replies_posted = sum(len(r) for r in marked.values())
    for message in observed.incoming:
        result.sent += 1
        if message.accepted:
            result.accepted += 1
            _account(message, marked.get(message.conversation, []), observed, result, faults)


def _account(
    message: Incoming,
    replies: list[Reply],
    observed: Observation,
    result: CheckResult,
    faults: Sequence[FaultEvent],
) -> None:
    """Where one accepted message ended up."""

    def violation(kind: str, detail: str) -> None:
        jobs = (message.job,) if message.job is not None else ()
        result.violations.append(
            Violation(kind, detail, message.conversation, (message.message_id,), jobs)
        )

    if message.job is None:
        result.lost += 1
        violation("lost", "2xx but never enqueued")
        return
    job_id = int(message.job)
    covering = [r for r in replies if r.answers(job_id)]
    if len(covering) == 1:
        result.replied += 1
        return
    if len(covering) > 1:
        result.duplicates += len(covering) - 1
        first, last = covering[0].received_at, covering[-1].received_at
        seen = ", ".join(f"{r.covers} at +{r.received_at - first:.2f}s" for r in covering)
        violation("duplicate", f"{len(covering)} replies cover it: {seen}" + _near(faults, last))
        return
    facts = observed.jobs.get(message.job)
    if facts is not None and facts.state == "dead":
        result.dead += 1
        if not facts.error:
            violation("dead_without_reason", "dead-lettered without a recorded reason")
    elif facts is not None and facts.handed_off:
        result.handed_off += 1
    else:
        result.lost += 1
        state = facts.state if facts is not None else "no job record"
        violation("lost", f"accepted, never answered (job {state})")


def check_order(
    observed: Observation, result: CheckResult, faults: Sequence[FaultEvent] = ()
) -> None:
    for conversation, replies in observed.replies.items():
        marked = [r for r in replies if r.covers is not None]
        for earlier, later in itertools.pairwise(marked):
            assert earlier.covers is not None and later.covers is not None
            if later.covers[0] <= earlier.covers[1]:
                result.order_violations += 1
                detail = (
                    f"reply {earlier.covers} then {later.covers}{_near(faults, later.received_at)}"
                )
                messages = (earlier.message_id, later.message_id)
                result.violations.append(Violation("order", detail, conversation, messages))


def _reservations(history: Sequence[Event]) -> dict[str, list[tuple[int, Event]]]:
    """job id -> its ``reserved`` events with their position in the history."""
    found: dict[str, list[tuple[int, Event]]] = {}
    for position, event in enumerate(history):
        if event.type == "reserved":
            found.setdefault(event.job, []).append((position, event))
    return found


def _reserved_again(reservations: list[tuple[int, Event]], token: str) -> tuple[Event, str] | None:
    """The first ``reserved`` event after the one with ``token`` that carries another
    token, and that token. None when the own reservation is not in the history (events of
    the engine's old format carry no token: nothing can be told apart)."""
    own = next((pos for pos, e in reservations if parse_run(e.info).token == token), None)
    if own is None:
        return None
    for position, event in reservations:
        other = parse_run(event.info).token
        if position > own and other is not None and other != token:
            return event, other
    return None


def _near(faults: Sequence[FaultEvent], at: float, margin_s: float = 3.0) -> str:
    names = [f"{f.kind}:{f.target}" for f in faults if f.covers(at, margin_s)]
    return f"; faults near: {', '.join(names)}" if names else ""


def check_fencing(
    history: Sequence[Event],
    observed: Observation,
    faults: Sequence[FaultEvent],
    result: CheckResult,
    expect_fencing: bool,
    tolerance_s: float,
) -> None:
    reservations = _reservations(history)
    for conversation, replies in observed.replies.items():
        for reply in replies:
            if reply.covers is None:
                continue
            if reply.run is None:
                result.unfenced += 1
                if expect_fencing or reply.run_malformed:
                    what = "malformed sluice_run" if reply.run_malformed else "no sluice_run"
                    message = (reply.message_id,)
                    result.violations.append(Violation("unfenced", what, conversation, message))
                continue
            result.fenced += 1
            reasons = _stale_reasons(reply, reservations, tolerance_s)
            if reasons:
                result.stale += 1
                detail = "; ".join(reasons) + _near(faults, reply.received_at)
                jobs = reply.run.jobs
                result.violations.append(
                    Violation("stale", detail, conversation, (reply.message_id,), jobs)
                )


def _stale_reasons(
    reply: Reply, reservations: dict[str, list[tuple[int, Event]]], tolerance_s: float
) -> list[str]:
    assert reply.run is not None
    run = reply.run
    reasons = []
    late_s = reply.received_at - (run.lease_until_ms / 1000 + tolerance_s)
    if late_s > 0:
        reasons.append(f"stored {late_s + tolerance_s:.3f} s after the lease of {run.worker} ended")
    for job, own_token in run.tokens:
        again = _reserved_again(reservations.get(job, []), own_token)
        if again is None:
            continue
        event, token = again
        late_s = reply.received_at - (event.at + tolerance_s)
        if late_s > 0:
            owner = parse_run(event.info).worker
            reasons.append(
                f"stored {late_s + tolerance_s:.3f} s after job {job} (token {own_token}) was "
                f"reserved again by {owner} (token {token}, event {event.id})"
            )
    return reasons


def started_jobs(event: Event) -> list[str]:
    """The jobs a ``started`` event charged: its job field, or (one event per script call)
    the list in its info, ``worker|id:token,id:token,...``."""
    if event.job:
        return [event.job]
    refs = event.info.partition("|")[2]
    return [ref.partition(":")[0] for ref in refs.split(",") if ref]


def check_dead_letters(
    history: Sequence[Event], observed: Observation, result: CheckResult
) -> None:
    ran: set[str] = set()
    dead: dict[str, str] = {}  # job -> conversation key, in order of death
    for event in history:
        prefetch = event.type == "reserved" and parse_run(event.info).prefetch
        result.prefetched += prefetch
        if event.type == "started":
            ran.update(started_jobs(event))
        elif event.type == "reserved" and not prefetch:
            ran.add(event.job)
        elif event.type == "dead":
            dead.setdefault(event.job, event.key)
    for job, facts in observed.jobs.items():
        if facts.state == "dead":
            dead.setdefault(job, "")
    for job, key in dead.items():
        if job not in ran:
            result.dead_without_run += 1
            where = f" in {key}" if key else ""
            detail = f"dead-lettered{where} without ever running"
            result.violations.append(Violation("dead_without_run", detail, jobs=(job,)))
