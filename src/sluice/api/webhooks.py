"""POST /webhooks/chatwoot: the HTTP edge of the intake (limits, content type), the rest
is sluice.service.intake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sluice import tracing
from sluice.api.body_limit import DRAIN_BYTES, declared_length, discard
from sluice.api.state import app_state
from sluice.chatwoot.signature import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from sluice.tracing import service as traced

router = APIRouter(tags=["intake"])
WEBHOOK_PATH: Final = "/webhooks/chatwoot"

_ID: Final[dict[str, Any]] = {"type": "integer", "minimum": 1}
_EVENTS: Final = [
    "message_created",
    "message_updated",
    "conversation_created",
    "conversation_status_changed",
    "conversation_updated",
    "conversation_resolved",
    "conversation_opened",
    "webwidget_triggered",
]

# The handler reads the raw body itself (the signature covers the exact bytes, and the size
# limit must apply while streaming), so FastAPI cannot infer the request from a parameter.
# This documents it for clients and lets schemathesis fuzz the route from the schema. It is
# deliberately loose: Chatwoot adds fields every release and the intake ignores what it does
# not use; only the ids named here matter (see sluice.chatwoot.payloads).
OPENAPI: Final[dict[str, Any]] = {
    "parameters": [
        {
            "name": SIGNATURE_HEADER,
            "in": "header",
            "required": False,
            "description": (
                "`sha256=` + hex HMAC-SHA256 of `<timestamp>.<raw body>` with the webhook "
                "secret; required when CHATWOOT_WEBHOOK_SECRET is set"
            ),
            "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
        },
        {
            "name": TIMESTAMP_HEADER,
            "in": "header",
            "required": False,
            "description": "Unix seconds the signature was made at (at most 300 s old)",
            "schema": {"type": "string", "pattern": "^[0-9]{1,15}$"},
        },
        {
            "name": DELIVERY_HEADER,
            "in": "header",
            "required": False,
            "description": "Chatwoot's delivery id; a repeated delivery is answered `duplicate`",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,100}$"},
        },
    ],
    "requestBody": {
        "required": True,
        "description": (
            "A Chatwoot webhook body (at most SLUICE_WEBHOOK_MAX_BYTES, strict UTF-8 JSON). "
            "`message_created` carries the message at the top level and its conversation in "
            "`conversation`; conversation events carry the conversation at the top level."
        ),
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": True,
                    "properties": {
                        "event": {"anyOf": [{"enum": _EVENTS}, {"type": "string"}]},
                        "id": _ID,
                        "content": {"type": ["string", "null"]},
                        "message_type": {
                            "anyOf": [
                                {"enum": ["incoming", "outgoing", "activity", "template"]},
                                {"type": "integer", "enum": [0, 1, 2, 3]},
                            ]
                        },
                        "private": {"type": "boolean"},
                        "created_at": {"type": ["string", "integer"]},
                        "account": {"type": "object", "properties": {"id": _ID}},
                        "sender": {
                            "type": "object",
                            "properties": {"id": _ID, "type": {"type": "string"}},
                        },
                        "conversation": {
                            "type": "object",
                            "properties": {
                                "id": _ID,
                                "status": {
                                    "enum": ["open", "pending", "resolved", "snoozed"],
                                },
                                "inbox_id": _ID,
                            },
                        },
                    },
                },
                "example": {
                    "event": "message_created",
                    "id": 1001,
                    "content": "Hello, my order has not arrived",
                    "message_type": "incoming",
                    "private": False,
                    "created_at": "2025-01-01T10:00:00Z",
                    "account": {"id": 7},
                    "sender": {"id": 55, "type": "contact", "name": "Ada"},
                    "conversation": {"id": 418, "status": "pending", "inbox_id": 3},
                },
            }
        },
    },
}


@router.post(
    WEBHOOK_PATH,
    responses={
        200: {"description": "stored (queued), duplicate, or deliberately ignored"},
        400: {"description": "invalid JSON (not strict UTF-8 JSON, duplicate keys, NaN, ...)"},
        401: {"description": "signature missing, stale or wrong"},
        413: {"description": "body over SLUICE_WEBHOOK_MAX_BYTES"},
        415: {"description": "not application/json"},
        422: {"description": "payload without the ids a reply needs (kept in the rejected log)"},
        429: {"description": "cannot store right now; Chatwoot retries (Retry-After)"},
    },
    openapi_extra=OPENAPI,
)
async def chatwoot_webhook(request: Request) -> JSONResponse:
    """Chatwoot webhook receiver (account webhook, agent bot or API inbox)."""
    st = app_state(request.app)
    limit = st.settings.webhook_max_bytes
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = declared_length(request.headers.get("content-length", ""))
    chunks = request.stream()
    if media != "application/json":
        error = "content type must be application/json"
        return await _refuse(415, error, chunks, declared, limit + DRAIN_BYTES)
    if declared is not None and declared > limit:
        return await _refuse(413, f"body over {limit} bytes", chunks, declared, limit + DRAIN_BYTES)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:  # chunked: no length was declared
            return await _refuse(413, f"body over {limit} bytes", chunks, None, DRAIN_BYTES)
    assert st.intake is not None
    if tracing.enabled:
        # The root of the message's trace (docs/tracing.md); its send span is a child.
        with traced.webhook(WEBHOOK_PATH, str(request.url), request.headers, len(body)) as span:
            outcome = await st.intake.handle(bytes(body), request.headers)
            traced.answered(span, outcome.status, outcome.body)
    else:
        outcome = await st.intake.handle(bytes(body), request.headers)
    return JSONResponse(outcome.body, outcome.status, headers=outcome.headers)


async def _refuse(
    status: int, error: str, rest: AsyncIterator[bytes], declared: int | None, budget: int
) -> JSONResponse:
    """Refuse without keeping the body: what is left of it is read and dropped up to
    ``budget`` bytes, so a client still sending reads the answer rather than a reset
    connection; beyond that (or a declared length beyond it) nothing more is read and the
    connection is closed with the answer, so an endless body cannot keep it busy."""
    if await discard(rest, budget, declared):
        return JSONResponse({"error": error}, status)
    return JSONResponse({"error": error}, status, headers={"Connection": "close"})
