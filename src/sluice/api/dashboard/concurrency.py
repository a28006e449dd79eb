"""The dashboard's concurrency panel: the mode, the adaptive controller's target over the
last hour and its recent decisions with their reasons (docs/adaptive-concurrency.md).

The history is the controller's own decision log, the queue's event stream (type
``concurrency``): nothing is kept for the dashboard alone."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from sluice.api.dashboard.sessions import Session
from sluice.api.state import app_state
from sluice.control.controller import read_status, target_history
from sluice.worker import registry

router = APIRouter()

HISTORY_S = 3600


@router.get("/api/concurrency")
async def concurrency(request: Request, _: Session) -> dict[str, Any]:
    st = app_state(request.app)
    settings, queue = st.settings, st.queue
    now = time.time()
    status = await read_status(queue)
    changes = await target_history(queue, int((now - HISTORY_S) * 1000))
    workers = await registry.live_workers(queue.redis, queue.keys)
    live = await queue.live_settings()
    return {
        "mode": settings.worker_concurrency_mode,
        "configured": settings.worker_concurrency,
        "bounds_per_worker": [settings.worker_concurrency_min, settings.worker_concurrency_max],
        "cooldown_s": settings.worker_concurrency_cooldown_s,
        "override": live["concurrency"],
        "slots_now": sum(int(w.get("slots", 0)) for w in workers),
        "workers": len(workers),
        "status": status.to_dict(),
        "history": changes,
        "now": now,
    }
