"""Admin routes of predictive scaling: the forecast and recommendation as JSON, and the same
number in the shape KEDA's ``metrics-api`` scaler reads (docs/scaling.md).

Both only read what the monitoring leader stored (:func:`sluice.scaling.service.read_state`):
an API process never forecasts on a request, so a scrape every few seconds costs one GET.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from sluice.api.auth import AdminOnly
from sluice.api.state import app_state
from sluice.scaling.service import STALE_AFTER_S, age_s, read_state
from sluice.scaling.settings import load_scaling_settings

router = APIRouter(prefix="/api/admin/scaling", dependencies=[AdminOnly], tags=["scaling"])

KEDA_PATH = "/api/admin/scaling/keda"
KEDA_VALUE_LOCATION = "desired_workers"
"""The GJSON path a ScaledObject's ``valueLocation`` names (deploy/keda/scaledobject.yaml)."""

OFF_REASON = "SLUICE_SCALING_ENABLED is false: the worker count is static"
PENDING_REASON = (
    "no recommendation yet: the monitoring leader computes one for each finished minute "
    "(a worker or API process with monitoring on must be running)"
)


async def _current(request: Request) -> tuple[dict[str, Any] | None, str | None]:
    """The stored state, or None and why there is none."""
    if not load_scaling_settings().enabled:
        return None, OFF_REASON
    state = await read_state(app_state(request.app).queue)
    return (state, None) if state is not None else (None, PENDING_REASON)


@router.get("")
async def scaling(request: Request) -> dict[str, Any]:
    """The last forecast (15 minutes, expected and upper band per minute), its inputs, the
    model and history length, and the recommended worker processes with the reason."""
    return await scaling_document(request)


async def scaling_document(request: Request) -> dict[str, Any]:
    """What :func:`scaling` answers; the dashboard shows the same document."""
    state, why = await _current(request)
    if state is None:
        return {"enabled": why != OFF_REASON, "desired_workers": None, "reason": why}
    return {**state, "age_s": age_s(state, time.time())}


@router.get("/keda")
async def scaling_keda(request: Request) -> dict[str, int]:
    """``{"desired_workers": N}`` for KEDA's metrics-api scaler (``valueLocation:
    desired_workers``, ``targetValue: "1"``: replicas = N). 404 with the reason while
    there is no recommendation (scaling off, or none computed yet): KEDA counts any answer
    but 200 as a failed read and applies the ScaledObject's fallback replicas, instead of
    scaling on a made-up number. Not a 5xx: nothing is broken, there is nothing to read."""
    state, why = await _current(request)
    if state is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, why)
    age = age_s(state)
    if age > STALE_AFTER_S:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"the recommendation is {age:.0f} s old: no monitoring leader refreshes it "
            f"(stale after {STALE_AFTER_S:g} s)",
        )
    return {KEDA_VALUE_LOCATION: int(state["desired_workers"])}
