"""What a customer message's conversation promises: the inputs of its deadline.

Read from the webhook by :func:`sluice.chatwoot.conversation_facts.read_facts` (which
cites the Chatwoot source of every field); kept free of Chatwoot parsing here so the
deadline logic and the rules file can be used (and tested) on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class AppliedSla:
    """The SLA policy applied to a conversation, as the webhook carries it."""

    name: str
    first_response_s: float | None
    next_response_s: float | None
    business_hours_only: bool
    frt_due_ms: float | None = None  # Chatwoot's own due times (Chatwoot's clock)
    nrt_due_ms: float | None = None


@dataclass(frozen=True, slots=True)
class ConversationFacts:
    """The fields of a message's conversation a deadline can depend on (Chatwoot's clock
    for the times)."""

    inbox_id: int | None = None
    channel: str | None = None
    labels: tuple[str, ...] = ()
    contact: Mapping[str, Any] = field(default_factory=dict)
    priority: str | None = None
    waiting_since_ms: float | None = None
    first_reply_ms: float | None = None
    created_ms: float | None = None
    sla: AppliedSla | None = None
