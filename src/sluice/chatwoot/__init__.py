"""Chatwoot integration: webhook signatures, payload classification and the REST client.

Everything Chatwoot-specific lives here so the queue and the brokers only ever see typed
events (``payloads.classify``) and one retrying, deadline-aware client
(``client.ChatwootClient``). What they rely on about Chatwoot is in
``docs/chatwoot-facts.md``.

The modules, by job:

- webhooks in: ``signature`` and ``replay`` (is the request Chatwoot's, and new),
  ``payloads`` (``classify``) with ``events`` (the typed events) and ``payload_fields``;
- calls out: ``client`` (``ChatwootClient``) put together from ``transport`` (sending,
  retrying, the duplicate look), ``retry`` (the policy), ``errors``, ``messages`` and
  ``conversations`` (the endpoints); ``admin`` adds the setup and inspection calls;
- ``features``: what each Chatwoot release does that matters to Sluice;
- ``sluice chatwoot setup``: ``setup`` with ``setup_plan``, ``setup_receivers``,
  ``setup_advice``, ``setup_errors``, ``setup_output``, and ``receivers`` (shared with
  validate);
- ``sluice validate``: ``checks`` with ``checks_account``, ``checks_receivers`` and
  ``checks_signing``.
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
