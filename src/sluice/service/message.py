"""The customer message as it travels from the intake to the reply pipeline.

The intake stores it as a job's payload (JSON in Redis, beside the job) and the pipeline
reads it back when the job's turn comes, possibly in another process, after a restart, or
from a job enqueued by an older version. One type for both ends keeps their idea of the
fields the same; :meth:`CustomerMessage.from_payload` is where an older or partial payload
gets its defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sluice.chatwoot.payloads import IncomingMessage


@dataclass(frozen=True, slots=True)
class CustomerMessage:
    """One line a customer wrote, with what the reply needs and nothing else (the raw
    webhook stays out of Redis)."""

    account_id: int
    conversation_id: int
    message_id: int
    content: str | None
    attachments: int
    sender_name: str | None
    created_at_ms: float  # when the customer wrote it, on Sluice's clock (intake)
    # The conversation's inbox: per-inbox fairness caps read it from the payload
    # (queue/lua/lib/fair_inbox.lua); None when the webhook named none.
    inbox_id: int | None = None

    @classmethod
    def of(cls, event: IncomingMessage, written_ms: float) -> CustomerMessage:
        return cls(
            account_id=event.account_id,
            conversation_id=event.conversation_id,
            message_id=event.message_id,
            content=event.content,
            attachments=len(event.attachments),
            sender_name=event.sender_name,
            created_at_ms=written_ms,
            inbox_id=event.inbox_id,
        )

    def to_payload(self) -> dict[str, Any]:
        """The job payload (JSON-ready)."""
        return {
            "account_id": self.account_id,
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "content": self.content,
            "attachments": self.attachments,
            "sender_name": self.sender_name,
            "created_at_ms": self.created_at_ms,
            "inbox_id": self.inbox_id,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], *, received_ms: float = 0.0) -> CustomerMessage:
        """Back from a job payload; ``received_ms`` stands in for a missing write time."""
        return cls(
            account_id=int(payload["account_id"]),
            conversation_id=int(payload["conversation_id"]),
            message_id=int(payload["message_id"]),
            content=payload.get("content"),
            attachments=int(payload.get("attachments") or 0),
            sender_name=payload.get("sender_name"),
            created_at_ms=float(payload.get("created_at_ms") or received_ms),
            inbox_id=_optional_int(payload.get("inbox_id")),
        )


def _optional_int(value: Any) -> int | None:
    """An id of an older or partial payload: absent or not a number reads as None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
