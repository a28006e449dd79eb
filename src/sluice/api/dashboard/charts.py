"""The dashboard's charts: throughput, latency percentiles, utilization and queue depth over
the last hour or day, and where the time of a reply went.

The series are read from the monitoring buckets the workers already write (see
:mod:`sluice.monitor.windows`), so drawing a chart costs a pipeline of hash reads and keeps
no history of its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from sluice.api.dashboard.sessions import Session
from sluice.api.state import AppState, app_state
from sluice.monitor.histogram import Histogram
from sluice.monitor.windows import COARSE_S, combine

router = APIRouter()


def _parse(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in raw.items():
        try:
            out[k.decode()] = int(v)
        except ValueError:
            continue
    return out


def _point(t: int, seconds: float, buckets: Sequence[Mapping[str, int]]) -> dict[str, Any]:
    """One chart point from the buckets of its step; the ``_``-fields are the depth samples
    the summary records (see :mod:`sluice.api.dashboard.summary`). A step without any bucket
    (before the system started, or while nothing of it ran) has no values rather than zeros:
    the charts leave it blank instead of drawing a flat line at zero."""
    if not buckets:
        return {
            "t": t,
            **dict.fromkeys(("throughput", "arrival", "failed", "p50", "p95", "p99")),
            **dict.fromkeys(("utilization", "depth", "oldest_age_ms")),
        }
    plain = [{k: v for k, v in b.items() if not k.startswith("_")} for b in buckets]
    stats = combine("point", max(1, round(seconds)), plain)
    samples = sum(b.get("_qdn", 0) for b in buckets)
    sla: Histogram = stats.sla
    return {
        "t": t,
        "throughput": stats.completed / seconds if seconds else 0.0,
        "arrival": stats.get("enq") / seconds if seconds else 0.0,
        "failed": stats.failed,
        "p50": sla.percentile(50),
        "p95": sla.percentile(95),
        "p99": sla.percentile(99),
        "utilization": stats.utilization,
        "depth": sum(b.get("_qd", 0) for b in buckets) / samples if samples else None,
        "oldest_age_ms": sum(b.get("_age", 0) for b in buckets) / samples if samples else None,
    }


async def build_series(st: AppState, span: Literal["1h", "24h"]) -> dict[str, Any]:
    """Chart series: the last hour per minute from the 10 s buckets, or the last 24 h per
    5 minutes from the 1-minute roll-ups (minutes not rolled up yet come from the 10 s
    buckets). Rates are per second; the current, partial step is scaled to its length."""
    now = time.time()
    minute_now = int(now // COARSE_S)
    if span == "1h":
        minutes = list(range(minute_now - 59, minute_now + 1))
        coarse_ids: list[int] = []
        fine_minutes = minutes
        step_min = 1
    else:
        first = minute_now - 24 * 60 + 1
        first -= first % 5
        minutes = list(range(first, minute_now + 1))
        coarse_ids = [m for m in minutes if m < minute_now]
        fine_minutes = [m for m in minutes if m >= minute_now - 119]
        step_min = 5
    per_minute: dict[int, list[dict[str, int]]] = {m: [] for m in minutes}
    # A partitioned queue's buckets are per partition (docs/partitions.md): summed here.
    for engine in await st.queue.current_engines():
        keys = engine.keys
        pipe = st.queue.redis.pipeline(transaction=False)
        for m in coarse_ids:
            pipe.hgetall(keys.mon_1m(m))
        fine_ids = [m * 6 + i for m in fine_minutes for i in range(6)]
        for index in fine_ids:
            pipe.hgetall(keys.mon_10s(index))
        raw = await pipe.execute() if coarse_ids or fine_ids else []
        coarse = {m: _parse(r) for m, r in zip(coarse_ids, raw[: len(coarse_ids)], strict=True)}
        fine: dict[int, list[dict[str, int]]] = {}
        for index, r in zip(fine_ids, raw[len(coarse_ids) :], strict=True):
            if r:
                fine.setdefault(index // 6, []).append(_parse(r))
        for m in minutes:
            rolled = coarse.get(m)
            if rolled and rolled.get("_rolled"):
                per_minute[m].append({k: v for k, v in rolled.items() if k != "_rolled"})
            else:
                per_minute[m] += fine.get(m, [])
    points = []
    for start in range(minutes[0], minute_now + 1, step_min):
        group = [b for m in range(start, start + step_min) for b in per_minute.get(m, [])]
        # The current step is divided by the time it has run so far (a 10 s floor made a
        # minute two seconds old show a fifth of its real rate).
        seconds = min(step_min * COARSE_S, max(1.0, now - start * COARSE_S))
        points.append(_point(start * COARSE_S, seconds, group))
    return {
        "span": span,
        "step_s": step_min * COARSE_S,
        "now": now,
        "sla_warning_ms": st.settings.sla_warning_threshold_ms,
        "sla_critical_ms": st.settings.sla_critical_threshold_ms,
        "points": points,
    }


@router.get("/api/series")
async def series(
    request: Request, _: Session, span: Annotated[Literal["1h", "24h"], Query()] = "1h"
) -> dict[str, Any]:
    return await build_series(app_state(request.app), span)


@router.get("/api/breakdown")
async def breakdown(
    request: Request, _: Session, window: Annotated[Literal["1m", "5m", "1h"], Query()] = "5m"
) -> dict[str, Any]:
    """Where the time of the replies completed in the window went: mean ms per hop."""
    seconds = {"1m": 60, "5m": 300, "1h": 3600}[window]
    stats = await app_state(request.app).monitor.reader.window(window, seconds)
    return {"window": window, "completed": stats.completed, "breakdown_ms": stats.breakdown()}
