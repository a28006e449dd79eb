"""Tenant fairness on the dashboard: the per-account caps, the busiest accounts (turns in
flight, lanes held back at a cap) and the decisions taken (docs/fairness.md).

Read-only: the caps follow the workers' configuration (SLUICE_ACCOUNT_CONCURRENCY,
SLUICE_ACCOUNT_RATE), so the page shows them rather than offering to change them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sluice.api.dashboard.sessions import Session
from sluice.api.state import app_state

router = APIRouter()


@router.get("/api/fairness")
async def fairness(request: Request, _: Session) -> dict[str, Any]:
    return (await app_state(request.app).queue.fairness()).as_dict()
