"""The ``handoff`` handler: the broker is a human, so the bot steps aside.

It answers every turn with ``Reply(handoff=True)``: the pipeline then assigns the
conversation to the human in Chatwoot and sets it ``open`` (Chatwoot's bot contract: the
bot acts only while a conversation is ``pending``). The optional line tells the customer a
person is coming, so the wait for the agent does not look like silence.
"""

from __future__ import annotations

from sluice.broker.base import Reply, Turn
from sluice.broker.handlers.template import DEFAULT_HANDOFF_ANSWER

__all__ = ["HandoffHandler"]


class HandoffHandler:
    """Hands every turn to a human; ``message=None`` hands off without posting anything."""

    name = "handoff"

    def __init__(
        self,
        message: str | None = DEFAULT_HANDOFF_ANSWER,
        *,
        reason: str = "conversation assigned to a human",
    ) -> None:
        # An empty configured line means "post nothing", like None.
        self.message = (message or "").strip() or None
        self.reason = reason

    async def answer(self, turn: Turn) -> Reply:
        """Always a handoff; the configured line (if any) is the reply."""
        return Reply(self.message, handoff=True, reason=self.reason)
