"""The queue controls of the dashboard: pause, resume, drain, live settings and the profile.

These change what every worker does, so each needs the session and its CSRF token
(:data:`~sluice.api.dashboard.sessions.Csrf`) and is logged. A drain removes customers'
messages for good, so it is two steps: the page shows how many would go
(``drain-preview``), and the drain itself refuses to remove more than the operator saw.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sluice.api.dashboard.sessions import Csrf, Session
from sluice.api.state import app_state
from sluice.service.profiles import switch_profile

log = logging.getLogger("sluice.dashboard")

router = APIRouter()


class DrainBody(BaseModel):
    confirm: bool = False
    expected: int = Field(..., ge=0, description="the count the operator confirmed")


class LiveBody(BaseModel):
    concurrency: int | None = Field(None, ge=1, le=10_000)
    rate_limit: int | None = Field(None, ge=0, le=1_000_000)


class ProfileBody(BaseModel):
    profile: Literal["optimized", "legacy"]


@router.get("/api/drain-preview")
async def drain_preview(request: Request, _: Session) -> dict[str, int]:
    counts = await app_state(request.app).queue.counts()
    return {
        "waiting": counts["waiting"],
        "delayed": counts["delayed"],
        "would_remove": counts["waiting"] + counts["delayed"],
    }


@router.post("/api/queue/pause")
async def pause(request: Request, _: Csrf) -> dict[str, bool]:
    changed = await app_state(request.app).queue.pause()
    log.info("dashboard: queue paused (changed=%s)", changed)
    return {"paused": True, "changed": changed}


@router.post("/api/queue/resume")
async def resume(request: Request, _: Csrf) -> dict[str, bool]:
    changed = await app_state(request.app).queue.resume()
    log.info("dashboard: queue resumed (changed=%s)", changed)
    return {"paused": False, "changed": changed}


@router.post("/api/queue/drain")
async def drain(request: Request, _: Csrf, body: DrainBody) -> JSONResponse:
    """Drain only what the operator confirmed: if more is waiting now than the count the
    confirmation showed, answer 409 with the new count so the page can ask again."""
    queue = app_state(request.app).queue
    counts = await queue.counts()
    would = counts["waiting"] + counts["delayed"]
    if not body.confirm or would > body.expected:
        return JSONResponse(
            {"detail": "confirm the current count", "would_remove": would},
            status.HTTP_409_CONFLICT,
        )
    removed = await queue.drain()
    log.warning("dashboard: queue drained, %d jobs removed", removed)
    return JSONResponse({"removed": removed})


@router.post("/api/settings")
async def live_settings(request: Request, _: Csrf, body: LiveBody) -> dict[str, int | None]:
    queue = app_state(request.app).queue
    await queue.set_concurrency(body.concurrency)
    await queue.set_rate_limit(body.rate_limit)
    log.info(
        "dashboard: live settings concurrency=%s rate_limit=%s", body.concurrency, body.rate_limit
    )
    return await queue.live_settings()


@router.post("/api/profile")
async def profile(request: Request, _: Csrf, body: ProfileBody) -> dict[str, Any]:
    queue = app_state(request.app).queue
    await switch_profile(queue, body.profile)
    log.info("dashboard: profile switched to %s", body.profile)
    return {"profile": body.profile, **await queue.live_settings()}
