"""POST /webhooks/chatwoot: the HTTP edge of the intake (limits, content type), the rest
is sluice.intake."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sluice.api.state import app_state

router = APIRouter(tags=["intake"])


@router.post(
    "/webhooks/chatwoot",
    responses={
        200: {"description": "stored (queued), duplicate, or deliberately ignored"},
        400: {"description": "invalid JSON"},
        401: {"description": "signature missing, stale or wrong"},
        413: {"description": "body over SLUICE_WEBHOOK_MAX_BYTES"},
        415: {"description": "not application/json"},
        422: {"description": "payload without the ids a reply needs (kept in the rejected log)"},
        429: {"description": "cannot store right now; Chatwoot retries (Retry-After)"},
    },
)
async def chatwoot_webhook(request: Request) -> JSONResponse:
    """Chatwoot webhook receiver (account webhook, agent bot or API inbox)."""
    st = app_state(request.app)
    limit = st.settings.webhook_max_bytes
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        return JSONResponse({"error": "content type must be application/json"}, 415)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return JSONResponse({"error": f"body over {limit} bytes"}, 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return JSONResponse({"error": f"body over {limit} bytes"}, 413)
    assert st.intake is not None
    outcome = await st.intake.handle(bytes(body), request.headers)
    return JSONResponse(outcome.body, outcome.status, headers=outcome.headers)
