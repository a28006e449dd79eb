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
(see ``shared/docs/chatwoot-contract.md`` and the fixtures).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

CONVERSATION_STATUSES: Final = frozenset({"open", "pending", "resolved", "snoozed"})

# ``conversation.messages[]`` ("push" format) uses ints for message_type.
_PUSH_MESSAGE_TYPES: Final = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}
_MESSAGE_TYPES: Final = frozenset(_PUSH_MESSAGE_TYPES.values())

_STATUS_EVENTS: Final = frozenset(
    {"conversation_status_changed", "conversation_updated", "conversation_resolved",
     "conversation_opened"}
)  # fmt: skip
# Agent-bot events name the new status instead of carrying changed_attributes.
_IMPLIED_STATUS: Final = {"conversation_resolved": "resolved", "conversation_opened": "open"}


class InvalidPayload(ValueError):
    """The body cannot be acted on safely (missing or mistyped ids, not an object, unknown
    shapes of required fields). ``reason`` names the offending field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A public customer message: the only event that is brokered.

    ``content`` is None (or "") for attachment-only messages; ``created_at_ms`` is Chatwoot's
    creation time in epoch milliseconds (the SLA clock starts there, not at our intake).
    """

    account_id: int
    conversation_id: int
    message_id: int
    content: str | None
    created_at_ms: float
    conversation_status: str | None
    inbox_id: int | None
    sender_id: int | None
    sender_name: str | None
    attachments: tuple[dict[str, Any], ...]
    event: str

    @property
    def key(self) -> str:
        """Conversation key: display ids repeat across accounts, so both are needed."""
        return f"{self.account_id}:{self.conversation_id}"


@dataclass(frozen=True, slots=True)
class HumanTakeover:
    """A human agent replied publicly: the conversation is in human hands now, so queued
    bot work for it should stand down."""

    account_id: int
    conversation_id: int
    message_id: int
    agent_id: int | None
    created_at_ms: float

    @property
    def key(self) -> str:
        return f"{self.account_id}:{self.conversation_id}"


@dataclass(frozen=True, slots=True)
class ConversationStatusChanged:
    """The conversation's status changed (resolved: cancel queued work; open: a human owns
    it; pending: back to the bot). ``previous_status`` is None when the event does not say."""

    account_id: int
    conversation_id: int
    status: str
    previous_status: str | None
    event: str

    @property
    def key(self) -> str:
        return f"{self.account_id}:{self.conversation_id}"


@dataclass(frozen=True, slots=True)
class ConversationCreated:
    """A conversation appeared; lets us create state before its first message is brokered."""

    account_id: int
    conversation_id: int
    status: str | None

    @property
    def key(self) -> str:
        return f"{self.account_id}:{self.conversation_id}"


@dataclass(frozen=True, slots=True)
class Ignored:
    """Acknowledged and dropped on purpose; ``reason`` is for logs and metrics."""

    reason: str
    event: str


Event: TypeAlias = (
    IncomingMessage | HumanTakeover | ConversationStatusChanged | ConversationCreated | Ignored
)


# --- field helpers ---------------------------------------------------------------------------


def _is_id(value: object) -> bool:
    # bool is an int subclass in Python; JSON true is never an id.
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _require_id(value: object, field: str) -> int:
    if value is None:
        raise InvalidPayload(f"missing '{field}'")
    checked = _optional_id(value)
    if checked is None:
        raise InvalidPayload(f"'{field}' must be a positive integer, got {type(value).__name__}")
    return checked


def _optional_id(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _object(value: object, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        if value is None:
            raise InvalidPayload(f"missing '{field}' object")
        raise InvalidPayload(f"'{field}' must be an object, got {type(value).__name__}")
    return value


def _optional_object(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _push_messages(conversation: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages = conversation.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, Mapping)]


def _account_id(
    top: Mapping[str, Any], conversation: Mapping[str, Any], default: int | None
) -> int:
    """Top-level ``account.id`` exists only in newer Chatwoot versions (#11753, #12442);
    older ones carry it in the push-format messages; otherwise configuration decides."""
    account = top.get("account")
    if account is not None:
        return _require_id(_object(account, "account").get("id"), "account.id")
    nested = conversation.get("account")
    if isinstance(nested, Mapping) and nested.get("id") is not None:
        return _require_id(nested.get("id"), "conversation.account.id")
    messages = _push_messages(conversation)
    if messages and messages[0].get("account_id") is not None:
        return _require_id(messages[0].get("account_id"), "conversation.messages[0].account_id")
    if default is not None:
        return default
    raise InvalidPayload("missing 'account.id' (and no messages[0].account_id or default)")


def _epoch_ms(value: object, field: str) -> float | None:
    """ISO-8601 strings (top level) or Unix seconds (push format); None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidPayload(f"'{field}' must be a timestamp, got bool")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise InvalidPayload(f"'{field}' is out of range") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise InvalidPayload(f"'{field}' is not a valid timestamp")
        # Unix seconds per the contract; a millisecond value (>= year 5138 as seconds) is
        # accepted too rather than producing an absurd SLA.
        return seconds if seconds >= 1e11 else seconds * 1000.0
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidPayload(f"'{field}' is not an ISO-8601 timestamp") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)  # Chatwoot always sends UTC
        try:
            return parsed.timestamp() * 1000.0
        except (OverflowError, ValueError):
            raise InvalidPayload(f"'{field}' is out of range") from None
    raise InvalidPayload(f"'{field}' must be a string or number, got {type(value).__name__}")


def _message_created_at_ms(
    top: Mapping[str, Any], conversation: Mapping[str, Any], message_id: int
) -> float:
    top_level = _epoch_ms(top.get("created_at"), "created_at")
    if top_level is not None:
        return top_level
    for pushed in _push_messages(conversation):
        if pushed.get("id") == message_id:
            value = _epoch_ms(pushed.get("created_at"), "conversation.messages[].created_at")
            if value is not None:
                return value
    for field in ("last_activity_at", "timestamp"):
        value = _epoch_ms(conversation.get(field), f"conversation.{field}")
        if value is not None:
            return value
    raise InvalidPayload("missing 'created_at'")


def _message_type(value: object) -> str:
    if isinstance(value, str) and value in _MESSAGE_TYPES:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value in _PUSH_MESSAGE_TYPES:
        return _PUSH_MESSAGE_TYPES[value]
    if value is None:
        raise InvalidPayload("missing 'message_type'")
    raise InvalidPayload(f"unknown 'message_type' {value!r}"[:120])


def _private(value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidPayload(f"'private' must be a boolean, got {type(value).__name__}")
    return value


def _status(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidPayload(f"missing or non-string '{field}'")
    if value not in CONVERSATION_STATUSES:
        raise InvalidPayload(f"unknown conversation status in '{field}'")
    return value


def _known_status(value: object) -> str | None:
    return value if isinstance(value, str) and value in CONVERSATION_STATUSES else None


def _changed(top: Mapping[str, Any]) -> dict[str, Any] | None:
    """``changed_attributes: [{"<attr>": {"previous_value": ..., "current_value": ...}}]`` as
    one mapping of attribute -> change; None when the payload has no such list (only
    conversation_updated and *_status_changed carry it)."""
    changed = top.get("changed_attributes")
    if changed is None:
        return None
    if isinstance(changed, Mapping):  # tolerate a single object instead of a list
        changed = [changed]
    if not isinstance(changed, list):
        raise InvalidPayload("'changed_attributes' must be a list")
    merged: dict[str, Any] = {}
    for entry in changed:
        if isinstance(entry, Mapping):
            merged.update(entry)
    return merged


def human_assignee(conversation: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The conversation's assignee when it is a person (``meta.assignee`` with
    ``assignee_type`` "User" or absent, as older versions send). An AgentBot assignee is
    the bot itself: Chatwoot 4.16 makes every new conversation of a bot inbox the bot's
    (#14875), so counting it as a human would silence the bot everywhere."""
    meta = _optional_object(conversation.get("meta"))
    assignee = _optional_object(meta.get("assignee"))
    kind = meta.get("assignee_type")
    if assignee and kind in (None, "User", "user"):
        return assignee
    return None


def _status_change(top: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """The status entry of ``changed_attributes``: (current, previous)."""
    changed = _changed(top)
    if changed is None or "status" not in changed:
        return None
    change = _object(changed["status"], "changed_attributes[].status")
    current = _status(change.get("current_value"), "changed_attributes.status.current_value")
    return current, _known_status(change.get("previous_value"))


# --- classification ------------------------------------------------------------------------


def _message_created(top: Mapping[str, Any], event: str, default: int | None) -> Event:
    message_id = _require_id(top.get("id"), "id")
    conversation = _object(top.get("conversation"), "conversation")
    conversation_id = _require_id(conversation.get("id"), "conversation.id")
    account_id = _account_id(top, conversation, default)
    message_type = _message_type(top.get("message_type"))
    private = _private(top.get("private"))
    sender = _optional_object(top.get("sender"))
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
                agent_id=_optional_id(sender.get("id")),
                created_at_ms=_message_created_at_ms(top, conversation, message_id),
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
    inbox_id = _optional_id(conversation.get("inbox_id"))
    if inbox_id is None:
        inbox_id = _optional_id(_optional_object(top.get("inbox")).get("id"))
    name = sender.get("name")
    return IncomingMessage(
        account_id=account_id,
        conversation_id=conversation_id,
        message_id=message_id,
        content=content,
        created_at_ms=_message_created_at_ms(top, conversation, message_id),
        conversation_status=_known_status(conversation.get("status")),
        inbox_id=inbox_id,
        sender_id=_optional_id(sender.get("id")),
        sender_name=name if isinstance(name, str) else None,
        attachments=attachments,
        event=event,
    )


def _conversation_ids(top: Mapping[str, Any], default: int | None) -> tuple[int, int]:
    """Conversation events put the conversation object itself at the top level."""
    conversation_id = _require_id(top.get("id"), "id")
    return _account_id(top, top, default), conversation_id


def _conversation_status_event(top: Mapping[str, Any], event: str, default: int | None) -> Event:
    account_id, conversation_id = _conversation_ids(top, default)
    change = _status_change(top)
    if event == "conversation_updated" and change is None:
        # Chatwoot fires conversation_updated on every waiting_since change (each customer
        # message of a waiting conversation), on priority, labels, custom attributes and
        # assignment. Only a person *becoming* the assignee is a takeover; an assignee who
        # was already there (an agent who set the conversation back to pending without
        # unassigning it) is not news. Without changed_attributes (older versions) a
        # person as assignee is all there is to go on.
        changed = _changed(top)
        assignee = human_assignee(top)
        assigned_now = changed is None or "assignee_id" in changed
        if assignee and assigned_now:
            return HumanTakeover(
                account_id=account_id,
                conversation_id=conversation_id,
                message_id=0,
                agent_id=_optional_id(assignee.get("id")),
                created_at_ms=0.0,
            )
        what = ", ".join(sorted(changed)) if changed else "no change listed"
        return Ignored(f"conversation_updated ({what[:80]})", event)
    if change is not None:
        status, previous = change
    elif event in _IMPLIED_STATUS:
        status, previous = _IMPLIED_STATUS[event], None
    else:
        status, previous = _status(top.get("status"), "status"), None
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
    if default_account_id is not None and not _is_id(default_account_id):
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
            status=_known_status(payload.get("status")),
        )
    if event in _STATUS_EVENTS:
        return _conversation_status_event(payload, event, default_account_id)
    return Ignored(f"event '{event[:64]}' is not brokered", event)
