"""The typed events a Chatwoot webhook stands for, as the rest of Sluice sees them.

:func:`sluice.chatwoot.payloads.classify` turns each webhook body into exactly one of these,
so the intake and the reply pipeline never read Chatwoot's JSON themselves. Only
:class:`IncomingMessage` (a public customer message) is brokered; the others steer work
already queued (a human took over, the status changed, a conversation appeared) or are
:class:`Ignored` on purpose (our own bot's echo, private notes, events Sluice does not act
on). Every event about a conversation keys it by account id *and* display id, since
Chatwoot's conversation display ids repeat across accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

if TYPE_CHECKING:
    from sluice.deadlines.facts import ConversationFacts

CONVERSATION_STATUSES: Final = frozenset({"open", "pending", "resolved", "snoozed"})


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
    # The conversation's priority in Chatwoot (low/medium/high/urgent) when set.
    conversation_priority: str | None = None
    # What its conversation promises (waiting_since, SLA policy, labels, contact
    # attributes...): the deadline's inputs (sluice.deadlines).
    facts: ConversationFacts | None = None

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
