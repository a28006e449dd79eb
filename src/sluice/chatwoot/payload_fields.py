"""Reading the fields of a Chatwoot webhook body: strict with the ids, lenient with the rest.

A payload without a usable ``(account id, conversation display id, message id)`` raises
:class:`InvalidPayload` so the intake can dead-letter it instead of replying into the wrong
conversation; the dozens of fields Sluice does not use are ignored (Chatwoot adds fields
every release). The readers know where each Chatwoot version puts a field: the top-level
``account.id`` exists only in newer versions (#11753, #12442), older ones carry it in the
"push" format of ``conversation.messages[]`` (``Conversations::EventDataPresenter#push_data``),
which also uses ints for ``message_type`` and Unix seconds for timestamps where the top level
(``Message#webhook_data``) sends names and ISO-8601.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from sluice.chatwoot.events import CONVERSATION_STATUSES

# ``conversation.messages[]`` ("push" format) uses ints for message_type.
_PUSH_MESSAGE_TYPES: Final = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}
_MESSAGE_TYPES: Final = frozenset(_PUSH_MESSAGE_TYPES.values())


class InvalidPayload(ValueError):
    """The body cannot be acted on safely (missing or mistyped ids, not an object, unknown
    shapes of required fields). ``reason`` names the offending field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_id(value: object) -> bool:
    """Whether ``value`` is a usable Chatwoot id (a positive integer)."""
    # bool is an int subclass in Python; JSON true is never an id.
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def require_id(value: object, field: str) -> int:
    """The id in ``field``, or :class:`InvalidPayload` naming it."""
    if value is None:
        raise InvalidPayload(f"missing '{field}'")
    checked = optional_id(value)
    if checked is None:
        raise InvalidPayload(f"'{field}' must be a positive integer, got {type(value).__name__}")
    return checked


def optional_id(value: object) -> int | None:
    """The id, or None when ``value`` is not a usable one."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def require_object(value: object, field: str) -> Mapping[str, Any]:
    """The object in ``field``, or :class:`InvalidPayload` naming it."""
    if not isinstance(value, Mapping):
        if value is None:
            raise InvalidPayload(f"missing '{field}' object")
        raise InvalidPayload(f"'{field}' must be an object, got {type(value).__name__}")
    return value


def optional_object(value: object) -> Mapping[str, Any]:
    """The object, or an empty one when ``value`` is not an object."""
    return value if isinstance(value, Mapping) else {}


def push_messages(conversation: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The push-format ``conversation.messages[]`` (objects only; empty when absent)."""
    messages = conversation.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, Mapping)]


def account_id_of(
    top: Mapping[str, Any], conversation: Mapping[str, Any], default: int | None
) -> int:
    """Top-level ``account.id`` exists only in newer Chatwoot versions (#11753, #12442);
    older ones carry it in the push-format messages; otherwise configuration decides."""
    account = top.get("account")
    if account is not None:
        return require_id(require_object(account, "account").get("id"), "account.id")
    nested = conversation.get("account")
    if isinstance(nested, Mapping) and nested.get("id") is not None:
        return require_id(nested.get("id"), "conversation.account.id")
    messages = push_messages(conversation)
    if messages and messages[0].get("account_id") is not None:
        return require_id(messages[0].get("account_id"), "conversation.messages[0].account_id")
    if default is not None:
        return default
    raise InvalidPayload("missing 'account.id' (and no messages[0].account_id or default)")


def epoch_ms(value: object, field: str) -> float | None:
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


def message_created_at_ms(
    top: Mapping[str, Any], conversation: Mapping[str, Any], message_id: int
) -> float:
    top_level = epoch_ms(top.get("created_at"), "created_at")
    if top_level is not None:
        return top_level
    for pushed in push_messages(conversation):
        if pushed.get("id") == message_id:
            value = epoch_ms(pushed.get("created_at"), "conversation.messages[].created_at")
            if value is not None:
                return value
    for field in ("last_activity_at", "timestamp"):
        value = epoch_ms(conversation.get(field), f"conversation.{field}")
        if value is not None:
            return value
    raise InvalidPayload("missing 'created_at'")


def read_message_type(value: object) -> str:
    """``message_type`` as a name, whether sent as one or as a push-format int."""
    if isinstance(value, str) and value in _MESSAGE_TYPES:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value in _PUSH_MESSAGE_TYPES:
        return _PUSH_MESSAGE_TYPES[value]
    if value is None:
        raise InvalidPayload("missing 'message_type'")
    raise InvalidPayload(f"unknown 'message_type' {value!r}"[:120])


def read_private(value: object) -> bool:
    """``private`` (absent: a public message)."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidPayload(f"'private' must be a boolean, got {type(value).__name__}")
    return value


def require_status(value: object, field: str) -> str:
    """A conversation status Chatwoot knows, or :class:`InvalidPayload` naming ``field``."""
    if not isinstance(value, str):
        raise InvalidPayload(f"missing or non-string '{field}'")
    if value not in CONVERSATION_STATUSES:
        raise InvalidPayload(f"unknown conversation status in '{field}'")
    return value


# Conversation#priority (enum low/medium/high/urgent, or null) as its webhook_data sends it.
CONVERSATION_PRIORITIES = frozenset({"low", "medium", "high", "urgent"})


def known_priority(value: object) -> str | None:
    """Chatwoot's conversation priority when it is one Chatwoot has, else None (no
    priority set, or a value from a newer Chatwoot: treated as unset, never an error)."""
    return value if isinstance(value, str) and value in CONVERSATION_PRIORITIES else None


def known_status(value: object) -> str | None:
    """The status when Chatwoot knows it, else None (lenient: for fields only reported)."""
    return value if isinstance(value, str) and value in CONVERSATION_STATUSES else None


def changed_attributes(top: Mapping[str, Any]) -> dict[str, Any] | None:
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
    meta = optional_object(conversation.get("meta"))
    assignee = optional_object(meta.get("assignee"))
    kind = meta.get("assignee_type")
    if assignee and kind in (None, "User", "user"):
        return assignee
    return None


def status_change(top: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """The status entry of ``changed_attributes``: (current, previous)."""
    changed = changed_attributes(top)
    if changed is None or "status" not in changed:
        return None
    change = require_object(changed["status"], "changed_attributes[].status")
    current = require_status(change.get("current_value"), "changed_attributes.status.current_value")
    return current, known_status(change.get("previous_value"))
