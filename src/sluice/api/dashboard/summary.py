"""The live figures of the dashboard: one summary document with everything the page shows
except the chart series.

The same document answers ``/dashboard/api/summary`` and is pushed by the event stream
every 1.5 s, so the page renders one shape whichever way it arrived.

Queue depth history: building the summary with ``record_depth`` writes one sample per
10-second monitoring bucket (``mon:10s:<n>``) as fields ``_qd`` (waiting + delayed),
``_age`` (oldest waiting age, ms) and ``_qdn`` (1). Fields starting with ``_`` are ignored by
the window reader; the minute roll-up sums them, so a minute's mean depth is ``_qd / _qdn``.
Depth is therefore recorded while at least one dashboard is open (other figures come from
the workers themselves).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Request

from sluice.api.dashboard.sessions import Session
from sluice.api.state import AppState, app_state
from sluice.monitor.windows import record_depth as sample_depth
from sluice.service.profiles import live_profile

router = APIRouter()


def _thresholds(st: AppState) -> dict[str, Any]:
    """Where the page turns a figure amber or red: the alert rules' thresholds (the page and
    the alerts agree), or the defaults where no rule sets one."""
    rules = {str(r["name"]): r for r in st.rules}

    def pair(name: str, warning: float | None, critical: float | None) -> dict[str, Any]:
        rule = rules.get(name, {})
        return {
            "warning": rule.get("warning", warning),
            "critical": rule.get("critical", critical),
        }

    return {
        "sla_warning_ms": st.settings.sla_warning_threshold_ms,
        "sla_critical_ms": st.settings.sla_critical_threshold_ms,
        "sla_objective": st.settings.sla_objective,
        "sla_compliance": pair("sla_compliance_low", st.settings.sla_objective, None),
        "utilization": pair("worker_utilization_high", 0.8, 0.9),
        "queue_wait_ms": pair("queue_wait_high", 5000, 10000),
        "oldest_waiting_ms": pair(
            "oldest_waiting_age_high",
            st.settings.sla_warning_threshold_ms,
            st.settings.sla_critical_threshold_ms,
        ),
        "failure_rate": pair("failure_rate_high", 0.1, None),
    }


def _workers(st: AppState, raw: Sequence[Mapping[str, Any]], now: float) -> list[dict[str, Any]]:
    """The registered workers, each marked stale once its last heartbeat is 2.5 intervals
    old (at least 3 s): a worker that died is shown as such before the registry drops it."""
    stale_after = max(3.0, 2.5 * st.settings.heartbeat_ms / 1000)
    found = []
    for w in raw:
        age = max(0.0, now - float(w.get("heartbeat_at", 0)))
        found.append(
            {
                "id": w.get("id"),
                "host": w.get("host"),
                "pid": w.get("pid"),
                "slots": w.get("slots"),
                "busy": w.get("busy"),
                "utilization": w.get("utilization"),
                "throughput": w.get("throughput"),
                "processed": w.get("processed"),
                "failed": w.get("failed"),
                "heartbeat_at": w.get("heartbeat_at"),
                "heartbeat_age_s": round(age, 1),
                "stale": age > stale_after,
            }
        )
    return sorted(found, key=lambda w: (str(w["host"]), int(w["pid"] or 0)))


async def build_summary(st: AppState, *, record_depth: bool = False) -> dict[str, Any]:
    """Everything the live page shows except the chart series (one SSE event)."""
    now = time.time()
    snap = await st.monitor.snapshot()
    counts = snap["counts"]
    if record_depth:
        await sample_depth(st.queue.redis, st.queue.keys, counts, now)
    live = await live_profile(st.queue)
    overrides = await st.queue.live_settings()
    alerts = await st.alerts()
    w = snap["workers"]
    spool = st.spool_stats()
    return {
        "generated_at": now,
        "queue": st.queue.name,
        # This host's intake spool (sluice.service.spool): webhooks Redis could not take in time.
        "intake_spool": (
            {
                "depth": spool.depth,
                "oldest_age_s": round(spool.oldest_age_s, 3),
                "replayed": spool.replayed,
                "write_failures": spool.failures,
                "last_error": spool.last_error,
            }
            if spool is not None
            else None
        ),
        "counts": counts,
        # Depth per partition (one entry for an unpartitioned queue; docs/partitions.md).
        "partitions": [
            {
                "partition": p,
                **{k: c[k] for k in ("waiting", "delayed", "active", "ready_lanes")},
            }
            for p, c in enumerate(snap.get("partitions") or [counts])
        ],
        "windows": snap["windows"],
        "capacity": snap["capacity"],
        "workers": _workers(st, w["list"], now),
        "workers_total": {
            "count": w["count"],
            "slots": w["slots"],
            "busy": w["busy"],
            "utilization_now": w["utilization_now"],
        },
        "profile": {
            "configured": st.settings.profile,
            "live": live,
            "effective": live or st.settings.profile,
        },
        "live_settings": overrides,
        "effective": {
            "concurrency": overrides["concurrency"] or st.settings.worker_concurrency,
            "rate_limit": (
                overrides["rate_limit"]
                if overrides["rate_limit"] is not None
                else st.settings.queue_rate_limit
            ),
        },
        "thresholds": _thresholds(st),
        "alerts": alerts,
    }


@router.get("/api/summary")
async def summary(request: Request, _: Session) -> dict[str, Any]:
    return await build_summary(app_state(request.app), record_depth=True)
