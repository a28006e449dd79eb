"""Turning a Chatwoot webhook body into one typed event.

Chatwoot sends many events through the same URL, most of which must *not* reach a broker:
our own bot's replies come back as ``message_created`` (answering them would loop forever),
private notes must never be shown to a customer, and status changes after a handoff keep
arriving. ``classify`` makes that decision in one place, is lenient with the dozens of fields
we do not use (Chatwoot adds fields every release) and strict with the ids we key and reply
on: a payload without a usable ``(account id, conversation display id, message id)`` raises
``InvalidPayload`` so the intake can dead-letter it instead of replying into the wrong
conversation.

Shapes follow ``Message#webhook_data`` and ``Conversations::EventDataPresenter#push_data``
(see ``docs/chatwoot-facts.md``, section 3, and ``tests/fixtures/chatwoot``). The events
themselves are in :mod:`sluice.chatwoot.events`, the readers of single fields in
:mod:`sluice.chatwoot.payload_fields`; this module keeps the names callers import
(``from sluice.chatwoot.payloads import classify, IncomingMessage, ...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from sluice.chatwoot.conversation_facts import read_facts
from sluice.chatwoot.events import (
    CONVERSATION_STATUSES,
    ConversationCreated,
    ConversationStatusChanged,
    Event,
    HumanTakeover,
    Ignored,
    IncomingMessage,
)
from sluice.chatwoot.payload_fields import (
    InvalidPayload,
    account_id_of,
    changed_attributes,
    human_assignee,
    is_id,
    known_priority,
    known_status,
    message_created_at_ms,
    optional_id,
    optional_object,
    read_message_type,
    read_private,
    require_id,
    require_object,
    require_status,
    status_change,
)

__all__ = [
    "CONVERSATION_STATUSES",
    "ConversationCreated",
    "ConversationStatusChanged",
    "Event",
    "HumanTakeover",
    "Ignored",
    "IncomingMessage",
    "InvalidPayload",
    "classify",
    "human_assignee",
]

_STATUS_EVENTS: Final = frozenset(
    {"conversation_status_changed", "conversation_updated", "conversation_resolved",
     "conversation_opened"}
)  # fmt: skip
# Agent-bot events name the new status instead of carrying changed_attributes.
_IMPLIED_STATUS: Final = {"conversation_resolved": "resolved", "conversation_opened": "open"}


def _message_created(top: Mapping[str, Any], event: str, default: int | None) -> Event:
    message_id = require_id(top.get("id"), "id")
    conversation = require_object(top.get("conversation"), "conversation")
    conversation_id = require_id(conversation.get("id"), "conversation.id")
    account_id = account_id_of(top, conversation, default)
    message_type = read_message_type(top.get("message_type"))
    private = read_private(top.get("private"))
    sender = optional_object(top.get("sender"))
    sender_type = sender.get("type")
    sender_type = sender_type.lower() if isinstance(sender_type, str) else None

    if private:
        return Ignored("private note", event)
    if message_type == "activity":
        return Ignored("activity message", event)
    if message_type == "template":
        return Ignored("template message", event)
    if message_type == "outgoing":
        if sender_type == "agent_bot":
            return Ignored("bot echo", event)
        attributes = top.get("content_attributes")
        if isinstance(attributes, Mapping) and attributes.get("sluice_reply_id"):
            # Our own reply posted with a user token comes back as a user's message: the
            # marker we set on it tells it apart from an agent taking over.
            return Ignored("bot echo (a Sluice reply)", event)
        if sender_type == "user":
            return HumanTakeover(
                account_id=account_id,
                conversation_id=conversation_id,
                message_id=message_id,
                agent_id=optional_id(sender.get("id")),
                created_at_ms=message_created_at_ms(top, conversation, message_id),
            )
        return Ignored("outgoing message not sent by a user", event)

    # incoming, public
    content = top.get("content")
    if content is not None and not isinstance(content, str):
        raise InvalidPayload(f"'content' must be a string or null, got {type(content).__name__}")
    raw_attachments = top.get("attachments")
    attachments = (
        tuple(dict(a) for a in raw_attachments if isinstance(a, Mapping))
        if isinstance(raw_attachments, list)
        else ()
    )
    inbox_id = optional_id(conversation.get("inbox_id"))
    if inbox_id is None:
        inbox_id = optional_id(optional_object(top.get("inbox")).get("id"))
    name = sender.get("name")
    priority = known_priority(conversation.get("priority"))
    return IncomingMessage(
        account_id=account_id,
        conversation_id=conversation_id,
        message_id=message_id,
        content=content,
        created_at_ms=message_created_at_ms(top, conversation, message_id),
        conversation_status=known_status(conversation.get("status")),
        inbox_id=inbox_id,
        sender_id=optional_id(sender.get("id")),
        sender_name=name if isinstance(name, str) else None,
        attachments=attachments,
        event=event,
        conversation_priority=priority,
        facts=read_facts(top, conversation, priority),
    )


def _conversation_ids(top: Mapping[str, Any], default: int | None) -> tuple[int, int]:
    """Conversation events put the conversation object itself at the top level."""
    conversation_id = require_id(top.get("id"), "id")
    return account_id_of(top, top, default), conversation_id


def _conversation_status_event(top: Mapping[str, Any], event: str, default: int | None) -> Event:
    account_id, conversation_id = _conversation_ids(top, default)
    change = status_change(top)
    if event == "conversation_updated" and change is None:
        # Chatwoot fires conversation_updated on every waiting_since change (each customer
        # message of a waiting conversation), on priority, labels, custom attributes and
        # assignment. Only a person *becoming* the assignee is a takeover; an assignee who
        # was already there (an agent who set the conversation back to pending without
        # unassigning it) is not news. Without changed_attributes (older versions) a
        # person as assignee is all there is to go on.
        changed = changed_attributes(top)
        assignee = human_assignee(top)
        assigned_now = changed is None or "assignee_id" in changed
        if assignee and assigned_now:
            return HumanTakeover(
                account_id=account_id,
                conversation_id=conversation_id,
                message_id=0,
                agent_id=optional_id(assignee.get("id")),
                created_at_ms=0.0,
            )
        what = ", ".join(sorted(changed)) if changed else "no change listed"
        return Ignored(f"conversation_updated ({what[:80]})", event)
    if change is not None:
        status, previous = change
    elif event in _IMPLIED_STATUS:
        status, previous = _IMPLIED_STATUS[event], None
    else:
        status, previous = require_status(top.get("status"), "status"), None
    return ConversationStatusChanged(
        account_id=account_id,
        conversation_id=conversation_id,
        status=status,
        previous_status=previous,
        event=event,
    )


def classify(payload: object, *, default_account_id: int | None = None) -> Event:
    """The one event a webhook body stands for.

    Raises ``InvalidPayload`` (and nothing else) when the body is not a JSON object or lacks
    usable ids; the intake should ack with 2xx and dead-letter it, never call Chatwoot.
    ``default_account_id`` covers old Chatwoot versions whose payloads carry no account id.
    """
    if not isinstance(payload, Mapping):
        raise InvalidPayload(f"payload must be a JSON object, got {type(payload).__name__}")
    event = payload.get("event")
    if not isinstance(event, str) or not event:
        raise InvalidPayload("missing or non-string 'event'")
    if default_account_id is not None and not is_id(default_account_id):
        raise ValueError("default_account_id must be a positive integer")

    if event == "message_created":
        return _message_created(payload, event, default_account_id)
    if event == "message_updated":
        return Ignored("message_updated (edits and status updates are not brokered)", event)
    if event == "conversation_created":
        account_id, conversation_id = _conversation_ids(payload, default_account_id)
        return ConversationCreated(
            account_id=account_id,
            conversation_id=conversation_id,
            status=known_status(payload.get("status")),
        )
    if event in _STATUS_EVENTS:
        return _conversation_status_event(payload, event, default_account_id)
    return Ignored(f"event '{event[:64]}' is not brokered", event)
