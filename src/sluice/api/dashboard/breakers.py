"""The dashboard's self-healing panel: each broker's circuit breaker, and the bulk replay of
dead letters by filter.

The breakers are read from Redis (:func:`sluice.broker.breaker.read_breakers`), the state
every worker acts on. The replay is the admin API's (:mod:`sluice.queue.dead_replay`, the
same filter and checks as ``POST /api/admin/dead-letters/retry``) behind the session and
its CSRF token. It is two steps, like the drain: a dry run shows how many dead letters the
filter selects, and the replay refuses to requeue more than the count the operator saw.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from pydantic import Field

from sluice.api.admin import DeadLetterReplay, replay_filter
from sluice.api.dashboard.sessions import Csrf, Session
from sluice.api.state import app_state
from sluice.broker.breaker import read_breakers
from sluice.queue.dead_replay import replay, requeue

log = logging.getLogger("sluice.dashboard")

router = APIRouter()


class DashboardReplay(DeadLetterReplay):
    """The admin API's replay request, plus the count the dry run showed."""

    expected: int | None = Field(
        None, ge=0, description="the count the operator confirmed (required to replay)"
    )


@router.get("/api/breakers")
async def breakers(request: Request, _: Session) -> dict[str, Any]:
    """Every broker's breaker (closed, open until ..., half-open) with the last reason."""
    queue = app_state(request.app).queue
    views = await read_breakers(queue.redis, queue.keys)
    return {"now_ms": time.time() * 1000, "breakers": [v.as_dict() for v in views]}


@router.post("/api/dead-letters/replay")
async def replay_dead(request: Request, _: Csrf, body: DashboardReplay) -> JSONResponse:
    """A dry run (the default) answers the count; a replay needs ``expected`` and answers
    409 with the new count when the filter now selects more than that."""
    queue = app_state(request.app).queue
    flt = replay_filter(body)
    preview = await replay(queue, flt, dry_run=True)
    if body.dry_run:
        return JSONResponse(preview.as_dict())
    if body.expected is None or len(preview.matched) > body.expected:
        return JSONResponse(
            {"detail": "confirm the current count", "matched": len(preview.matched)},
            status.HTTP_409_CONFLICT,
        )
    done = await requeue(queue, preview)  # the letters counted, none that died since
    log.warning(
        "dashboard: %d dead letters replayed (%d skipped) by filter %s",
        len(done.requeued),
        len(done.skipped),
        body.model_dump(exclude_none=True, exclude={"dry_run", "expected"}),
    )
    return JSONResponse(done.as_dict())
