"""What a Jepsen run records, as plain values: queue events, fault events, and what the
fake Chatwoot and the queue held at the end.

Kept free of I/O so the checker can be fed hand-made histories (test_checker.py) and a
recorded run alike. The parsers accept the formats of the engine before and after fencing
tokens: a ``reserved`` event's info was just the worker id, and becomes
``<worker>|<token>`` or ``<worker>|<token>|p`` (``p``: reserved into the worker's prefetch
buffer, not started; a ``started`` event with ``<worker>|<token>`` follows when it runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..test_faults import _marker  # sluice_reply_id as a job-id range

PREFETCH_FLAG = "p"


@dataclass(frozen=True)
class Event:
    """One entry of the queue's event stream ``sluice:{<queue>}:events``.

    ``id`` is the stream entry id ``<ms>-<seq>``: its millisecond part is the Redis clock
    when the script that wrote it ran (this host's clock, since Redis runs here), so it is
    the event's time, and ids are ordered like the events."""

    id: str
    type: str
    job: str = ""
    key: str = ""
    info: str = ""

    @property
    def order(self) -> tuple[int, int]:
        return stream_id(self.id)

    @property
    def at(self) -> float:
        """Epoch seconds."""
        return self.order[0] / 1000


def stream_id(entry_id: str) -> tuple[int, int]:
    """``"<ms>-<seq>"`` as a tuple that sorts like the stream."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Run:
    """Who holds a job after a ``reserved`` or ``started`` event: the worker, the
    reservation token (None in the engine's old format) and whether the job only went into
    the worker's prefetch buffer (reserved, not running yet)."""

    worker: str
    token: str | None
    prefetch: bool = False


def parse_run(info: str) -> Run:
    """``<worker>``, ``<worker>|<token>`` or ``<worker>|<token>|p`` (worker ids contain
    colons, never a ``|``)."""
    parts = info.split("|")
    token = parts[1] if len(parts) > 1 and parts[1] else None
    return Run(parts[0], token, prefetch=len(parts) > 2 and parts[2] == PREFETCH_FLAG)


@dataclass(frozen=True)
class FaultEvent:
    """One thing the nemesis did, from ``start`` to ``end`` (epoch seconds), to
    ``target`` (``worker-1``, ``api``, ``redis``)."""

    kind: str
    target: str
    start: float
    end: float
    detail: str = ""

    def covers(self, at: float, margin_s: float = 0.0) -> bool:
        return self.start - margin_s <= at <= self.end + margin_s


@dataclass(frozen=True)
class SluiceRun:
    """A reply's ``content_attributes.sluice_run``: the runner that posted it, the jobs its
    turn answered with the reservation token of each (members of a batch are reserved with
    tokens of their own), and the lease expiry it believed in (epoch ms, Redis clock)."""

    worker: str
    tokens: tuple[tuple[str, str], ...]  # (job id, its reservation token), in turn order
    lease_until_ms: float

    @property
    def jobs(self) -> tuple[str, ...]:
        return tuple(job for job, _ in self.tokens)


def parse_sluice_run(value: Any) -> SluiceRun | None:
    """The ``sluice_run`` attribute, or None when it is missing or malformed. Two shapes:

    - an object ``{"worker", "token", "jobs": [ids], "lease_until_ms"}`` (one token for
      the turn; ``"tokens": {id: token}`` instead of ``token`` gives each job its own);
    - a flat string ``worker=<id>;lease_until_ms=<ms>;jobs=<id>:<token>,...`` (Chatwoot
      keeps any string in content_attributes).

    A run without a lease end fences nothing: malformed."""
    if isinstance(value, str):
        return _parse_flat_run(value)
    if not isinstance(value, dict):
        return None
    worker, jobs, lease = value.get("worker"), value.get("jobs"), value.get("lease_until_ms")
    tokens = value.get("tokens")
    if not isinstance(worker, str) or not isinstance(jobs, list):
        return None
    if not isinstance(tokens, dict):
        token = value.get("token")
        if not isinstance(token, str | int) or isinstance(token, bool):
            return None
        tokens = dict.fromkeys(jobs, token)
    pairs = tuple((str(job), str(tokens.get(job, tokens.get(str(job), "")))) for job in jobs)
    return _run(worker, pairs, lease)


def _parse_flat_run(value: str) -> SluiceRun | None:
    fields = dict(part.partition("=")[::2] for part in value.split(";"))
    if not {"worker", "lease_until_ms", "jobs"} <= fields.keys():
        return None
    pairs = tuple(
        (job, token)
        for job, _, token in (ref.partition(":") for ref in fields["jobs"].split(","))
        if job
    )
    try:
        lease: Any = float(fields["lease_until_ms"])
    except ValueError:
        return None
    return _run(fields["worker"], pairs, lease)


def _run(worker: str, pairs: tuple[tuple[str, str], ...], lease: Any) -> SluiceRun | None:
    if not isinstance(lease, int | float) or isinstance(lease, bool) or not pairs:
        return None
    if not all(job and token for job, token in pairs):
        return None
    return SluiceRun(worker, pairs, float(lease))


@dataclass(frozen=True)
class Reply:
    """A public outgoing message the fake Chatwoot stored, in the order it stored them."""

    message_id: int
    conversation: int
    received_at: float  # epoch seconds: when Chatwoot stored it (the customer saw it)
    covers: tuple[int, int] | None  # job-id range from sluice_reply_id
    run: SluiceRun | None = None
    run_malformed: bool = False  # a sluice_run attribute that could not be read

    def answers(self, job_id: int) -> bool:
        return self.covers is not None and self.covers[0] <= job_id <= self.covers[1]

    @classmethod
    def from_message(cls, conversation: int, message: dict[str, Any]) -> Reply:
        attributes = message.get("content_attributes") or {}
        raw = attributes.get("sluice_run")
        run = parse_sluice_run(raw)
        return cls(
            message_id=int(message["id"]),
            conversation=conversation,
            received_at=float(message["received_at"]),
            covers=_marker(message),
            run=run,
            run_malformed=raw is not None and run is None,
        )


@dataclass(frozen=True)
class Incoming:
    """A customer message: whether a webhook attempt for it got a 2xx, and the job it was
    enqueued as (from the queue's dedupe record; None if it never was)."""

    message_id: int
    conversation: int
    accepted: bool
    job: str | None = None


@dataclass(frozen=True)
class JobFacts:
    """A job's end state as the queue holds it after the run."""

    state: str
    error: str | None = None
    handed_off: bool = False  # the pipeline's `handed_off` or `skipped` hop


@dataclass
class Observation:
    """What the run left behind, besides the event history."""

    incoming: list[Incoming] = field(default_factory=list)
    replies: dict[int, list[Reply]] = field(default_factory=dict)  # conversation -> replies
    jobs: dict[str, JobFacts] = field(default_factory=dict)
    history_gaps: list[str] = field(default_factory=list)  # stream entries the recorder missed
