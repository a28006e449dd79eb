"""Every Chatwoot fixture classifies as the fixtures README says, and no JSON at all can make
``classify`` raise anything but ``InvalidPayload``."""

from __future__ import annotations

import contextlib
import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.chatwoot.payloads import (
    ConversationCreated,
    ConversationStatusChanged,
    HumanTakeover,
    Ignored,
    IncomingMessage,
    InvalidPayload,
    classify,
)

from ..fixtures import CHATWOOT

FIXTURES = CHATWOOT


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC).timestamp() * 1000


def test_01_first_incoming_message_is_brokered() -> None:
    event = classify(load("01_message_created_incoming_first.json"))
    assert isinstance(event, IncomingMessage)
    assert event.key == "7:418"
    assert (event.account_id, event.conversation_id, event.message_id) == (7, 418, 90211)
    assert event.content == "Hi! My order A-20931 hasn't arrived yet. Can you check where it is?"
    assert event.created_at_ms == ms("2026-03-10T08:14:02.517Z") == 1773130442517.0
    assert event.conversation_status == "pending"
    assert (event.inbox_id, event.sender_id, event.sender_name) == (12, 5031, "Maya Lindqvist")
    assert event.attachments == ()
    assert event.event == "message_created"


def test_02_follow_up_has_the_same_key() -> None:
    first = classify(load("01_message_created_incoming_first.json"))
    second = classify(load("02_message_created_incoming_followup.json"))
    assert isinstance(first, IncomingMessage) and isinstance(second, IncomingMessage)
    assert second.key == first.key == "7:418"
    assert second.message_id == 90215 > first.message_id
    assert second.created_at_ms > first.created_at_ms


def test_03_human_agent_reply_is_a_takeover() -> None:
    event = classify(load("03_message_created_outgoing_agent.json"))
    assert event == HumanTakeover(
        account_id=7,
        conversation_id=418,
        message_id=90230,
        agent_id=23,
        created_at_ms=ms("2026-03-10T08:19:45.733Z"),
    )


def test_04_private_note_is_ignored() -> None:
    event = classify(load("04_message_created_private_note.json"))
    assert isinstance(event, Ignored)
    assert event.reason == "private note"
    assert event.event == "message_created"


def test_05_attachment_only_message_has_no_content() -> None:
    event = classify(load("05_message_created_incoming_attachment_no_text.json"))
    assert isinstance(event, IncomingMessage)
    assert event.content is None
    assert event.key == "7:418"
    assert len(event.attachments) == 1
    assert event.attachments[0]["file_type"] == "image"
    assert event.attachments[0]["message_id"] == 90216


def test_06_conversation_created() -> None:
    event = classify(load("06_conversation_created.json"))
    assert event == ConversationCreated(account_id=7, conversation_id=418, status="pending")


def test_07_status_changed_to_resolved() -> None:
    event = classify(load("07_conversation_status_changed_resolved.json"))
    assert event == ConversationStatusChanged(
        account_id=7,
        conversation_id=418,
        status="resolved",
        previous_status="open",
        event="conversation_status_changed",
    )


def test_08_missing_conversation_id_is_invalid_and_names_the_field() -> None:
    with pytest.raises(InvalidPayload, match=r"conversation\.id") as info:
        classify(load("08_malformed_message_created_missing_conversation_id.json"))
    assert "conversation.id" in info.value.reason


def test_09_other_account_same_display_id_is_a_different_key() -> None:
    event = classify(load("09_message_created_other_account.json"))
    assert isinstance(event, IncomingMessage)
    assert event.key == "11:418"
    assert event.key != classify(load("01_message_created_incoming_first.json")).key  # type: ignore[union-attr]


def test_10_bot_echo_is_ignored() -> None:
    event = classify(load("10_message_created_outgoing_bot_echo.json"))
    assert event == Ignored("bot echo", "message_created")


# --- account id fallbacks and other shapes -------------------------------------------------


def test_account_id_falls_back_to_push_messages_then_default() -> None:
    payload = load("01_message_created_incoming_first.json")
    del payload["account"]
    del payload["conversation"]["account"]
    assert classify(payload).key == "7:418"  # type: ignore[union-attr]  # messages[0]
    payload["conversation"]["messages"] = []
    assert classify(payload, default_account_id=9).key == "9:418"  # type: ignore[union-attr]
    with pytest.raises(InvalidPayload, match=r"account\.id"):
        classify(payload)


def test_mistyped_ids_are_invalid() -> None:
    for path, value in [
        (("id",), "90211"),
        (("id",), True),
        (("conversation", "id"), 418.0),
        (("account", "id"), None),
        (("account", "id"), -7),
    ]:
        payload = load("01_message_created_incoming_first.json")
        target = payload
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(InvalidPayload):
            classify(payload)


def test_created_at_falls_back_to_push_format_seconds() -> None:
    payload = load("01_message_created_incoming_first.json")
    del payload["created_at"]
    event = classify(payload)
    assert isinstance(event, IncomingMessage)
    assert event.created_at_ms == 1773130442 * 1000.0


def test_not_an_object_and_missing_event() -> None:
    for bad in ([], "x", 3, None):
        with pytest.raises(InvalidPayload, match="JSON object"):
            classify(bad)
    with pytest.raises(InvalidPayload, match="event"):
        classify({"id": 1})


@pytest.mark.parametrize(
    "event",
    ["message_updated", "conversation_typing_on", "contact_created", "webwidget_triggered"],
)
def test_other_events_are_ignored(event: str) -> None:
    payload = load("01_message_created_incoming_first.json")
    payload["event"] = event
    result = classify(payload)
    assert isinstance(result, Ignored) and result.event == event


def test_template_and_activity_messages_are_ignored() -> None:
    for message_type in ("template", "activity"):
        payload = load("01_message_created_incoming_first.json")
        payload["message_type"] = message_type
        assert classify(payload) == Ignored(f"{message_type} message", "message_created")


def test_outgoing_without_a_user_sender_is_ignored() -> None:
    payload = load("03_message_created_outgoing_agent.json")
    payload["sender"] = None
    assert isinstance(classify(payload), Ignored)


def test_conversation_updated_only_counts_with_a_status_change() -> None:
    payload = load("07_conversation_status_changed_resolved.json")
    payload["event"] = "conversation_updated"
    assert isinstance(classify(payload), ConversationStatusChanged)
    payload["changed_attributes"] = [{"assignee_id": {"previous_value": None, "current_value": 23}}]
    payload["meta"] = {
        **payload.get("meta", {}),
        "assignee": {"id": 23, "name": "Tomás"},
        "assignee_type": "User",
    }
    takeover = classify(payload)
    assert isinstance(takeover, HumanTakeover) and takeover.agent_id == 23  # an agent has it
    payload["meta"]["assignee"] = None
    payload["changed_attributes"] = [{"labels": {"previous_value": [], "current_value": ["x"]}}]
    assert isinstance(classify(payload), Ignored)


@pytest.mark.parametrize(
    ("event", "status"), [("conversation_resolved", "resolved"), ("conversation_opened", "open")]
)
def test_agent_bot_conversation_events(event: str, status: str) -> None:
    payload = load("06_conversation_created.json")
    payload["event"] = event
    assert classify(payload) == ConversationStatusChanged(7, 418, status, None, event)


# --- robustness ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def _check(payload: object) -> None:
    with contextlib.suppress(InvalidPayload):
        classify(payload)


@settings(max_examples=300)
@given(json_values)
def test_arbitrary_json_only_raises_invalid_payload(payload: object) -> None:
    _check(payload)


EVENTS = [
    "message_created",
    "message_updated",
    "conversation_created",
    "conversation_status_changed",
    "conversation_updated",
    "conversation_resolved",
    "conversation_opened",
]
PATHS = [
    ("id",),
    ("account",),
    ("account", "id"),
    ("conversation",),
    ("conversation", "id"),
    ("conversation", "messages"),
    ("conversation", "status"),
    ("conversation", "inbox_id"),
    ("created_at",),
    ("message_type",),
    ("private",),
    ("content",),
    ("sender",),
    ("sender", "type"),
    ("sender", "id"),
    ("attachments",),
    ("changed_attributes",),
    ("status",),
    ("messages",),
]
FIXTURE_NAMES = sorted(p.name for p in FIXTURES.glob("*.json"))


@settings(max_examples=400)
@given(
    name=st.sampled_from(FIXTURE_NAMES),
    event=st.sampled_from(EVENTS),
    mutations=st.lists(st.tuples(st.sampled_from(PATHS), json_values), max_size=3),
)
def test_mutated_fixtures_only_raise_invalid_payload(
    name: str, event: str, mutations: list[tuple[tuple[str, ...], object]]
) -> None:
    payload = copy.deepcopy(_FIXTURE_CACHE[name])
    payload["event"] = event
    for path, value in mutations:
        target: Any = payload
        for key in path[:-1]:
            if not isinstance(target, dict) or not isinstance(target.get(key), dict):
                target = None
                break
            target = target[key]
        if isinstance(target, dict):
            target[path[-1]] = value
    _check(payload)


_FIXTURE_CACHE = {name: load(name) for name in FIXTURE_NAMES}
