"""Alerts on the dashboard: the active ones, their history, the rules, and an operator's
acknowledgement or silence.

The dashboard only *requests* an ack or a silence; the leading alert evaluator applies it
(:mod:`sluice.alerts.store`), so every process and every channel agrees on an alert's
state.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field

from sluice.api.dashboard.sessions import Csrf, Session
from sluice.api.state import app_state

router = APIRouter()


class SilenceBody(BaseModel):
    minutes: int = Field(..., ge=1, le=7 * 24 * 60)


def _fingerprint(value: str) -> str:
    """An alert fingerprint from the URL, or 404 before it reaches Redis."""
    if not (8 <= len(value) <= 64) or not all(
        c in "0123456789abcdefghijklmnopqrstuvwxyz_" for c in value
    ):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alert")
    return value


@router.get("/api/alerts")
async def alerts(request: Request, _: Session) -> dict[str, Any]:
    st = app_state(request.app)
    return {"active": await st.alerts(), "history": await st.alert_history(), "rules": st.rules}


@router.post("/api/alerts/{fingerprint}/ack")
async def ack(request: Request, _: Csrf, fingerprint: str) -> dict[str, str]:
    try:
        await app_state(request.app).request_ack(_fingerprint(fingerprint), "dashboard")
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    return {"fingerprint": fingerprint, "requested": "ack"}


@router.post("/api/alerts/{fingerprint}/silence")
async def silence(request: Request, _: Csrf, fingerprint: str, body: SilenceBody) -> dict[str, Any]:
    try:
        until = await app_state(request.app).request_silence(
            _fingerprint(fingerprint), body.minutes * 60, "dashboard"
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    return {"fingerprint": fingerprint, "requested": "silence", "until": until}
