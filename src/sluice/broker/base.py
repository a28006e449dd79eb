"""What a broker's handler sees and returns: one *turn* of a conversation.

A turn is every customer message of one conversation that waited together (a burst is
answered once, not once per message), plus the bounded history the handler may need for
context, the broker that owns the conversation and the SLA deadline. Handlers are plain
objects with a ``name`` and an ``async answer(turn)``: the pipeline never needs to know
whether a template, an LLM or a human handoff produced the reply.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from sluice.broker.config import Broker
from sluice.errors import SluiceError

__all__ = [
    "ATTACHMENT_PLACEHOLDER",
    "MAX_HISTORY_MESSAGES",
    "CustomerLine",
    "HandlerError",
    "Reply",
    "ReplyHandler",
    "Turn",
    "answer_or_handoff",
    "now_ms",
]

log = logging.getLogger(__name__)

#: How a message's attachment reads in :meth:`Turn.text` (files are not sent to handlers).
ATTACHMENT_PLACEHOLDER = "[attachment]"

#: History longer than this is cut to its newest entries: context windows and request
#: sizes stay bounded however long a conversation runs.
MAX_HISTORY_MESSAGES = 20


def now_ms() -> float:
    """Wall-clock epoch milliseconds: deadlines come from Chatwoot timestamps, so they are
    epoch based, not monotonic."""
    return time.time() * 1000.0


@dataclass(frozen=True, slots=True)
class CustomerLine:
    """One incoming customer message of the turn.

    ``content`` is None (or empty) for attachment-only messages; ``attachments`` counts the
    files so handlers can say *something* about them without downloading anything.
    """

    message_id: int
    content: str | None
    created_at_ms: float
    attachments: int = 0

    def text(self) -> str:
        """The message as one line of text, each attachment shown as ``[attachment]``."""
        parts = [self.content.strip()] if self.content and self.content.strip() else []
        parts.extend([ATTACHMENT_PLACEHOLDER] * max(0, self.attachments))
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Turn:
    """Everything a handler needs to answer one burst of a conversation.

    ``deadline_ms`` is the epoch millisecond by which the reply must be *sent* (the end of
    the SLA budget of the oldest line), so handlers derive their own timeouts from it.
    ``attempt`` counts from 1; ``last_attempt`` tells a handler that a failure now ends in
    a handoff rather than a retry. ``history`` holds previous ``{"role", "content"}``
    pairs, oldest first, cut to the newest :data:`MAX_HISTORY_MESSAGES`.
    """

    account_id: int
    conversation_id: int
    key: str
    lines: list[CustomerLine]
    history: list[dict[str, str]]
    broker: Broker
    deadline_ms: float
    attempt: int = 1
    last_attempt: bool = False
    _sorted: list[CustomerLine] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Chatwoot gives no ordering guarantee; message ids grow monotonically, so sorting by
        # them restores the order the customer typed in.
        object.__setattr__(
            self, "_sorted", sorted(self.lines, key=lambda ln: (ln.message_id, ln.created_at_ms))
        )
        if len(self.history) > MAX_HISTORY_MESSAGES:
            object.__setattr__(self, "history", self.history[-MAX_HISTORY_MESSAGES:])

    def remaining_ms(self, now: float | None = None) -> float:
        """Milliseconds left of the SLA budget at ``now`` (epoch ms; default: the clock),
        never negative."""
        current = now_ms() if now is None else now
        return max(0.0, self.deadline_ms - current)

    def text(self) -> str:
        """The customer's lines in order, one per line; blank lines are dropped."""
        return "\n".join(t for t in (line.text() for line in self._sorted) if t)

    def content_text(self) -> str:
        """Only what the customer typed (no attachment placeholders): for keyword rules,
        which must not match on our own ``[attachment]`` marker."""
        return "\n".join(
            ln.content.strip() for ln in self._sorted if ln.content and ln.content.strip()
        )

    @property
    def attachments(self) -> int:
        """Attachments across the turn's lines."""
        return sum(max(0, ln.attachments) for ln in self.lines)


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's answer.

    ``content`` is posted to the customer when not None. ``handoff=True`` asks the pipeline
    to assign a human and set the conversation ``open`` (the bot stops acting); ``reason``
    says why, for logs, events and the conversation's private note. ``via`` names the
    handler that answered instead of the broker's own (the circuit breaker's fallback),
    so the job's timeline says so; None when the broker's handler answered.
    """

    content: str | None
    handoff: bool = False
    reason: str | None = None
    via: str | None = None


class HandlerError(SluiceError):
    """A handler could not answer. ``retryable`` separates "try again" (timeouts, 429, 5xx,
    an empty completion) from "retrying cannot help" (401, a malformed request).
    ``throttled`` says the broker refused for load (HTTP 429), with the wait it asked for
    (``retry_after_s``, from Retry-After): the adaptive concurrency controller backs off on
    those (docs/adaptive-concurrency.md)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        throttled: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.throttled = throttled
        self.retry_after_s = retry_after_s


@runtime_checkable
class ReplyHandler(Protocol):
    """The one interface of every broker's reply handler (built-in, entry point or import
    path): it answers a turn. Not to be confused with the engine's
    :data:`sluice.Handler`, the ``async def handler(job)`` a worker runs; the reply
    pipeline is such a job handler, and it calls a ReplyHandler for each turn."""

    name: str

    async def answer(self, turn: Turn) -> Reply:
        """Answer the turn, or raise :class:`HandlerError`."""
        ...


#: The name this protocol had before the engine's Handler took it (kept for plug-ins).
Handler = ReplyHandler


async def answer_or_handoff(handler: ReplyHandler, turn: Turn) -> Reply:
    """Run ``handler`` and turn a *final* failure into a handoff.

    A retryable error before the last attempt propagates, so the queue retries with
    backoff; a non-retryable error, or any error on the last attempt, becomes
    ``Reply(handoff=True)``: a customer whose bot cannot answer gets a human instead of
    silence.
    """
    try:
        return await handler.answer(turn)
    except HandlerError as exc:
        if exc.retryable and not turn.last_attempt:
            raise
        log.warning(
            "handler %s failed for %s (attempt %d, %s): handing off",
            handler.name,
            turn.key,
            turn.attempt,
            exc,
        )
        return Reply(content=None, handoff=True, reason=f"{handler.name} handler failed: {exc}")
