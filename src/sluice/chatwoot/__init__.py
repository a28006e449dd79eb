"""Chatwoot integration: webhook signatures, payload classification and the REST client.

Everything Chatwoot-specific lives here so the queue and the brokers only ever see typed
events (``payloads.classify``) and one retrying, deadline-aware client
(``client.ChatwootClient``). The contract these follow is
``shared/docs/chatwoot-contract.md``.
"""

from __future__ import annotations

from sluice.chatwoot.client import ChatwootClient, ChatwootDeadlineError, ChatwootError
from sluice.chatwoot.payloads import (
    ConversationCreated,
    ConversationStatusChanged,
    Event,
    HumanTakeover,
    Ignored,
    IncomingMessage,
    InvalidPayload,
    classify,
)
from sluice.chatwoot.signature import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    sign,
    verify,
)

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ChatwootClient",
    "ChatwootDeadlineError",
    "ChatwootError",
    "ConversationCreated",
    "ConversationStatusChanged",
    "Event",
    "HumanTakeover",
    "Ignored",
    "IncomingMessage",
    "InvalidPayload",
    "SignatureError",
    "classify",
    "sign",
    "verify",
]
