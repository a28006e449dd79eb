"""``/conversations/{id}/messages``: create (users and bots) and index (users only)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from sluice.simulator.routes.common import CONVERSATION, Api, as_int, invalid
from sluice.simulator.state import OUTGOING, Principal, SenderKind

MAX_CONTENT = 150_000
CONTENT_TYPES = frozenset(
    {"text", "input_select", "cards", "form", "article", "input_email", "input_csat"}
)
PAGE_SIZE = 20
# What old MessageBuilder versions kept of content_attributes (facts §6).
LEGACY_CONTENT_ATTRIBUTES = ("items", "in_reply_to")


def _content_attributes(raw: object, keep_custom: bool) -> dict[str, Any]:
    """MessageBuilder: a hash or a JSON string, converted to a plain hash and stored whole,
    nested values and custom keys included (facts §6, PR #15907)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise invalid("Content attributes is invalid", "content_attributes") from None
    if not isinstance(raw, dict):
        raise invalid("Content attributes is invalid", "content_attributes")
    if keep_custom:
        return raw
    return {k: v for k, v in raw.items() if k in LEGACY_CONTENT_ATTRIBUTES}


def _private(body: dict[str, Any]) -> bool:
    private = body.get("private", False)
    if isinstance(private, str) and private in ("true", "false"):
        private = private == "true"
    if not isinstance(private, bool):
        raise invalid("Private is invalid", "private")
    return private


def _content(body: dict[str, Any]) -> str:
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        raise invalid("Content is invalid", "content")
    if content is None or not content.strip():
        raise invalid("Content can't be blank", "content")
    if len(content) > MAX_CONTENT:
        raise invalid(f"Content is too long (maximum is {MAX_CONTENT} characters)", "content")
    return content


def register(app: FastAPI, api: Api) -> None:
    sim = api.sim

    def sender(principal: Principal, body: dict[str, Any]) -> tuple[SenderKind, int | None]:
        """``user = Current.user || @resource``: a bot token posts as the bot. With
        ``sender_type: "AgentBot"`` and the id of a bot of the account (or a global one),
        any caller posts as that bot (MessageBuilder, facts §6)."""
        if principal.kind == "bot":
            return "agent_bot", sim.config.bot_id
        if body.get("sender_type") == "AgentBot" and as_int(body.get("sender_id")) == (
            sim.config.bot_id
        ):
            return "agent_bot", sim.config.bot_id
        return "user", principal.user_id

    @app.post(CONVERSATION + "/messages")
    async def create_message(account_id: str, conversation_id: str, request: Request) -> Response:
        principal = api.authenticate(request, "messages", "create")
        conversation = api.conversation_of(account_id, conversation_id)
        body = await api.body_of(request)
        message_type = body.get("message_type") or "outgoing"
        if message_type == "incoming":  # MessageBuilder: only API inboxes take incoming
            raise invalid("Incoming messages are only allowed in Api inboxes", "message_type")
        if message_type != "outgoing":
            raise invalid("Message type is not allowed for this inbox", "message_type")
        content = _content(body)
        private = _private(body)
        content_type = body.get("content_type") or "text"
        if content_type not in CONTENT_TYPES:
            raise invalid("Content type is not included in the list", "content_type")
        attributes = _content_attributes(
            body.get("content_attributes"), sim.profile.keeps_custom_content_attributes
        )
        sender_kind, sender_id = sender(principal, body)
        message = sim.add_message(
            conversation,
            content=content,
            message_type=OUTGOING,
            sender_kind=sender_kind,
            sender_id=sender_id,
            private=private,
            content_type=content_type,
            content_attributes=attributes,
        )
        # message_created (the echo of our own message), then first reply / waiting_since.
        await sim.emit(sim.message_events(conversation, message), wait=False)
        data = sim.shapes.message_push(message, conversation)
        if body.get("echo_id") is not None:
            data["echo_id"] = body["echo_id"]  # echoed, not stored: no idempotency key
        return JSONResponse(data)

    @app.get(CONVERSATION + "/messages")
    async def list_messages(account_id: str, conversation_id: str, request: Request) -> Response:
        # messages#index is in no version's bot allow-list (facts §4).
        api.authenticate(request, "messages", "index")
        conversation = api.conversation_of(account_id, conversation_id)
        before = as_int(request.query_params.get("before"))
        after = as_int(request.query_params.get("after"))
        messages = conversation.messages
        if before is not None:
            messages = [m for m in messages if m.id < before][-PAGE_SIZE:]
        elif after is not None:
            messages = [m for m in messages if m.id > after][:100]
        else:
            messages = messages[-PAGE_SIZE:]
        assignee, _ = sim.shapes.assignee(conversation)
        meta = {
            "labels": list(conversation.labels),
            "additional_attributes": {},
            "contact": sim.shapes.contact_push(conversation.contact),
            "assignee": assignee,
            "agent_last_seen_at": int(conversation.agent_last_seen_at),
            "assignee_last_seen_at": 0,
        }
        payload = [sim.shapes.message_push(m, conversation) for m in messages]
        return JSONResponse({"meta": meta, "payload": payload})
