"""The Chatwoot modules that were split (issue 12) still export every public name they
defined before, as the very objects now defined in the smaller modules."""

from __future__ import annotations

import importlib

import pytest

# The public names each module defined before the split, and where each lives now.
MOVED: dict[str, dict[str, str]] = {
    "sluice.chatwoot.client": {
        "log": "transport",
        "REPLY_ID_ATTRIBUTE": "messages",
        "RETRYABLE_STATUSES": "retry",
        "MAY_STILL_LAND": "retry",
        "ONLINE_AGENTS_TTL_S": "conversations",
        "ChatwootError": "errors",
        "ChatwootDeadlineError": "errors",
        "parse_retry_after": "retry",
        "may_still_land": "retry",
        "Guard": "transport",
        "ChatwootClient": "client",
    },
    "sluice.chatwoot.payloads": {
        "CONVERSATION_STATUSES": "events",
        "InvalidPayload": "payload_fields",
        "IncomingMessage": "events",
        "HumanTakeover": "events",
        "ConversationStatusChanged": "events",
        "ConversationCreated": "events",
        "Ignored": "events",
        "Event": "events",
        "human_assignee": "payload_fields",
        "classify": "payloads",
    },
    "sluice.chatwoot.setup": {
        "Mode": "setup_plan",
        "RECEIVER_PATH": "receivers",
        "NEEDED_EVENTS": "receivers",
        "BOT_DESCRIPTION": "setup_plan",
        "ADMIN_TOKEN_FIX": "setup_errors",
        "SetupError": "setup_errors",
        "SetupOptions": "setup_plan",
        "receiver_url": "setup_plan",
        "same_url": "receivers",
        "is_receiver_url": "receivers",
        "private_destination": "receivers",
        "explain": "setup_errors",
        "Printer": "setup_output",
        "print_plan": "setup_plan",
        "run_setup": "setup",
    },
    "sluice.chatwoot.checks": {
        "ReceiverKind": "checks_receivers",
        "MAX_INBOXES": "checks_receivers",
        "SETUP_HINT": "checks_receivers",
        "WHERE_SECRET": "checks_receivers",
        "KIND_NAME": "checks_receivers",
        "Receiver": "checks_receivers",
        "version_check": "checks",
        "signing_check": "checks_signing",
        "check_chatwoot": "checks",
    },
}

CASES = [(old, name, new) for old, names in MOVED.items() for name, new in names.items()]


@pytest.mark.parametrize(("old", "name", "new"), CASES)
def test_name_still_importable_from_its_old_module(old: str, name: str, new: str) -> None:
    module = importlib.import_module(old)
    home = importlib.import_module(f"sluice.chatwoot.{new}")
    assert getattr(module, name) is getattr(home, name)
    assert name in module.__all__


@pytest.mark.parametrize("old", sorted(MOVED))
def test_all_names_only_what_is_there(old: str) -> None:
    module = importlib.import_module(old)
    assert all(hasattr(module, name) for name in module.__all__)
