"""Hops and the durations derived from them.

Hop names are public vocabulary: ``source_created`` (Chatwoot's created_at), ``received``
(webhook hit), ``enqueued``, ``reserved`` (a worker slot took it), handler marks such as
``broker_assigned``, ``reply_generated``, ``reply_sent``, then ``completed`` / ``failed`` /
``dead``. The completing Lua script computes the same figures for the aggregates
(lib/observe_completion.lua); a test keeps the two in agreement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

Verdict = Literal["ok", "warn", "crit"]


@dataclass(frozen=True, slots=True)
class Durations:
    """Milliseconds. ``clock_skew_ms`` > 0 when the source's clock ran ahead of ours; the
    source time is then clamped to our receive time so no duration is negative."""

    intake_lag_ms: float | None
    queue_wait_ms: float | None
    processing_ms: float | None
    sla_ms: float | None
    clock_skew_ms: float
    verdict: Verdict | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def verdict(sla_ms: float, warning_ms: float, critical_ms: float) -> Verdict:
    if sla_ms > critical_ms:
        return "crit"
    if sla_ms > warning_ms:
        return "warn"
    return "ok"


def durations(
    hops: Mapping[str, float], warning_ms: float = 10_000, critical_ms: float = 30_000
) -> Durations:
    source, received = hops.get("source_created"), hops.get("received")
    enqueued = hops.get("enqueued")
    reserved = hops.get("started", hops.get("reserved"))  # after a prefetch buffer wait
    end = hops.get("reply_sent", hops.get("completed"))
    start = source if source is not None else received if received is not None else enqueued
    lag: float | None = None
    skew = 0.0
    if source is not None and received is not None:
        lag = received - source
        if lag < 0:
            skew, lag, start = -lag, 0.0, received
    wait = max(0.0, reserved - enqueued) if reserved is not None and enqueued is not None else None
    completed = hops.get("completed")
    processing = max(0.0, completed - reserved) if completed is not None and reserved else None
    sla = max(0.0, end - start) if end is not None and start is not None else None
    return Durations(
        intake_lag_ms=lag,
        queue_wait_ms=wait,
        processing_ms=processing,
        sla_ms=sla,
        clock_skew_ms=skew,
        verdict=verdict(sla, warning_ms, critical_ms) if sla is not None and completed else None,
    )
