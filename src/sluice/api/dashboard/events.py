"""The dashboard's live feed: a server-sent event stream of the summary every 1.5 s.

One stream per open page replaces a poll per figure. The session is checked before every
event, so a logout (in another tab too) or an expired session ends the stream at once, with
a ``logout`` event that sends the page back to the login form. Otherwise a stream ends after
five minutes and the browser's EventSource reconnects by itself, through the gate and the
session check of a new request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from sluice.api.dashboard.sessions import COOKIE, Session, session_key
from sluice.api.dashboard.summary import build_summary
from sluice.api.state import app_state

log = logging.getLogger("sluice.dashboard")

SSE_INTERVAL_S = 1.5
SSE_MAX_LIFETIME_S = 300.0  # the browser's EventSource reconnects by itself

router = APIRouter()


async def _events(request: Request, session_id: str) -> AsyncIterator[str]:
    st = app_state(request.app)
    started = time.monotonic()
    yield "retry: 2000\n\n"
    while time.monotonic() - started < SSE_MAX_LIFETIME_S:
        if await request.is_disconnected():
            return
        if await st.queue.redis.get(session_key(st, session_id)) is None:
            yield "event: logout\ndata: {}\n\n"
            return
        try:
            data = await build_summary(st, record_depth=True)
            yield f"event: snapshot\ndata: {json.dumps(data, allow_nan=False)}\n\n"
        except Exception as exc:  # keep the stream: the page shows the error and retries
            log.warning("dashboard snapshot failed: %s", type(exc).__name__)
            yield f"event: error\ndata: {json.dumps({'error': type(exc).__name__})}\n\n"
        await asyncio.sleep(SSE_INTERVAL_S)


@router.get("/events")
async def events(request: Request, _: Session) -> StreamingResponse:
    """Server-sent events: a ``snapshot`` event (the summary) every 1.5 s."""
    return StreamingResponse(
        _events(request, request.cookies.get(COOKIE, "")),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
