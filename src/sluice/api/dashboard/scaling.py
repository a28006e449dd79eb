"""Predictive scaling on the dashboard: the recommended worker processes, why, and the
forecast it came from (the same document as ``GET /api/admin/scaling``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sluice.api.dashboard.sessions import Session
from sluice.api.scaling import scaling_document

router = APIRouter()


@router.get("/api/scaling")
async def scaling(request: Request, _: Session) -> dict[str, Any]:
    return await scaling_document(request)
