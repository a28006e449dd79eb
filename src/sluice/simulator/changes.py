"""Conversation changes and the events Chatwoot dispatches for them.

Every change to a conversation goes through :meth:`Changes.save`, which plays
``Conversation#execute_after_update_commit_callbacks``: ``conversation_opened`` /
``conversation_resolved`` (bots only) and ``conversation_status_changed`` when the status
changed, then ``conversation_updated`` when any of the tracked attributes changed
(``notify_conversation_updation``, ``list_of_keys`` in ``app/models/conversation.rb``, facts
§3). Which receiver gets which of these is decided at delivery
(:meth:`VersionProfile.receives`), so the full set is always produced here.

The version-dependent rules (assignment side effects, bot handoff, the human open, who
clears ``waiting_since``) sit in the methods below, each with its source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sluice.simulator.config import SimulatorConfig
from sluice.simulator.shapes import Shapes
from sluice.simulator.state import INCOMING, OUTGOING, Conversation, Message, iso
from sluice.simulator.versions import VersionProfile

# Conversation#list_of_keys (column name -> our attribute), facts §3.
TRACKED = {
    "team_id": "team_id",
    "assignee_id": "assignee_id",
    "assignee_agent_bot_id": "assignee_bot_id",
    "status": "status",
    "snoozed_until": "snoozed_until",
    "custom_attributes": "custom_attributes",
    "label_list": "labels",
    "waiting_since": "waiting_since",
    "first_reply_created_at": "first_reply_created_at",
    "priority": "priority",
}


@dataclass(frozen=True)
class Emission:
    """One event to deliver, with the conversation it concerns (for routing: an agent bot
    gets the events of its inbox and of the conversations assigned to it, facts §3)."""

    payload: dict[str, Any]
    conversation: Conversation | None = None

    @property
    def event(self) -> str:
        return str(self.payload.get("event", ""))


def _changed_value(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column == "waiting_since":
        return int(value)  # as in shared fixture 11 (not checked against Chatwoot's source)
    if column == "first_reply_created_at":
        return iso(value)
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


class Changes:
    """Applies changes to conversations and returns the events they cause."""

    def __init__(
        self,
        config: SimulatorConfig,
        shapes: Shapes,
        profile: Callable[[], VersionProfile],
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.shapes = shapes
        self.profile = profile
        self.clock = clock

    # --- the one write path -------------------------------------------------------------------

    def save(self, conversation: Conversation, **columns: Any) -> list[Emission]:
        """Set ``columns`` (Chatwoot column names) in one save; the events it dispatches."""
        before: dict[str, Any] = {}
        for column, value in columns.items():
            attribute = TRACKED[column]
            previous = getattr(conversation, attribute)
            if previous != value:
                before[column] = previous
                setattr(conversation, attribute, value)
        if not before:
            return []
        previous_updated = conversation.updated_at
        conversation.updated_at = self.clock()
        events: list[Emission] = []
        if "status" in before:
            status = conversation.status
            # notify_status_change: CONVERSATION_OPENED / _RESOLVED (agent-bot events only)
            # and CONVERSATION_STATUS_CHANGED with only `status` in changed_attributes.
            if status in ("open", "resolved"):
                name = "conversation_opened" if status == "open" else "conversation_resolved"
                events.append(self._event(conversation, name))
            change = {"status": {"previous_value": before["status"], "current_value": status}}
            events.append(self._event(conversation, "conversation_status_changed", [change]))
        changed = [
            {
                column: {
                    "previous_value": _changed_value(column, before[column]),
                    "current_value": _changed_value(column, getattr(conversation, attr)),
                }
            }
            for column, attr in TRACKED.items()
            if column in before
        ]
        changed.append(
            {
                "updated_at": {
                    "previous_value": iso(previous_updated),
                    "current_value": iso(conversation.updated_at),
                }
            }
        )
        events.append(self._event(conversation, "conversation_updated", changed))
        return events

    def _event(
        self, conversation: Conversation, name: str, changed: list[dict[str, Any]] | None = None
    ) -> Emission:
        return Emission(self.shapes.conversation_event(conversation, name, changed), conversation)

    # --- status ---------------------------------------------------------------------------

    def set_status(
        self, conversation: Conversation, status: str, *, snoozed_until: int | None = None
    ) -> list[Emission]:
        """A status change (UI, API, automation): a bare save of status (and snoozed_until).
        Resolving clears waiting_since (facts §10)."""
        columns: dict[str, Any] = {
            "status": status,
            "snoozed_until": snoozed_until if status == "snoozed" else None,
        }
        if status == "resolved":
            columns["waiting_since"] = None
        return self.save(conversation, **columns)

    def reopen_for_incoming(self, conversation: Conversation) -> list[Emission]:
        """Message#reopen_conversation (facts §10): snoozed -> open; resolved -> pending when
        the inbox has an active bot, else open."""
        if conversation.status == "snoozed":
            return self.set_status(conversation, "open")
        if conversation.status == "resolved":
            return self.set_status(conversation, "pending" if self.config.inbox_has_bot else "open")
        return []

    def bot_handoff(self, conversation: Conversation) -> list[Emission]:
        """Conversation#bot_handoff! (facts §4): open!; since PR #14875 (4.16) the bot owner
        is cleared and waiting_since set when blank. No webhook of its own
        (CONVERSATION_BOT_HANDOFF is for reporting)."""
        columns: dict[str, Any] = {"status": "open", "snoozed_until": None}
        if self.profile().bot_owned_conversations:
            columns["assignee_agent_bot_id"] = None
        if self.profile().bot_reply_clears_waiting_since and conversation.waiting_since is None:
            columns["waiting_since"] = self.clock()
        return self.save(conversation, **columns)

    def human_open(self, conversation: Conversation, user_id: int, role: str) -> list[Emission]:
        """ConversationsController#toggle_status after the status save, when the result is
        open and Current.user is a User (facts §4): since 4.16 ``handle_human_open`` clears
        the bot owner; in every version a user whose role is ``agent`` becomes the assignee,
        overwriting any other (older: ``assign_conversation``, PR #3925)."""
        columns: dict[str, Any] = {}
        if self.profile().bot_owned_conversations:
            columns["assignee_agent_bot_id"] = None
        if role == "agent":
            columns["assignee_id"] = user_id
            # reset_agent_bot_when_assignee_present: a human assignee clears the bot (§10).
            columns["assignee_agent_bot_id"] = None
        return self.save(conversation, **columns) if columns else []

    # --- assignment -------------------------------------------------------------------------

    def assign_user(self, conversation: Conversation, user_id: int | None) -> list[Emission]:
        """AssignmentsController with a User (or nil: unassign), facts §5."""
        columns: dict[str, Any] = {"assignee_id": user_id}
        if user_id is None:
            return self.save(conversation, **columns)  # unassigning keeps the status
        # reset_agent_bot_when_assignee_present: a human assignee clears the bot (§10).
        bot_owned = conversation.assignee_bot_id is not None
        columns["assignee_agent_bot_id"] = None
        if (
            self.profile().assignment_status_effects
            and bot_owned
            and conversation.status == "pending"
        ):
            # Conversations::AssignmentService, PR #14870: a human taking a bot-owned
            # pending conversation opens it, and sets waiting_since when blank.
            columns["status"] = "open"
            if conversation.waiting_since is None:
                columns["waiting_since"] = self.clock()
        return self.save(conversation, **columns)

    def assign_bot(self, conversation: Conversation, bot_id: int | None) -> list[Emission]:
        """AssignmentsController with ``assignee_type: "AgentBot"`` (facts §5): the human
        assignee is cleared; since PR #14870 (4.16) the conversation becomes pending."""
        columns: dict[str, Any] = {"assignee_agent_bot_id": bot_id}
        if bot_id is not None:
            columns["assignee_id"] = None
            if self.profile().assignment_status_effects:
                columns["status"] = "pending"
                columns["snoozed_until"] = None
        return self.save(conversation, **columns)

    # --- messages --------------------------------------------------------------------------

    def after_message(self, conversation: Conversation, message: Message) -> list[Emission]:
        """Message#dispatch_create_events after MESSAGE_CREATED (facts §3, §6): a human
        reply's first-reply or waiting_since clearing, a customer message's waiting_since.

        - a human response (sender a User, public, outgoing) sets ``first_reply_created_at``
          on the first reply, and clears ``waiting_since``;
        - an AgentBot reply is not a human response (no first reply); it clears
          ``waiting_since`` only in newer versions (4.16 here);
        - an incoming message sets ``waiting_since`` when blank.
        """
        if message.private:
            return []
        if message.message_type == INCOMING:
            if conversation.waiting_since is None:
                return self.save(conversation, waiting_since=message.created_at)
            return []
        if message.message_type != OUTGOING:
            return []
        if message.sender_kind == "user":
            if conversation.first_reply_created_at is None:
                return self.save(
                    conversation, first_reply_created_at=message.created_at, waiting_since=None
                )
            return self.save(conversation, waiting_since=None)
        if message.sender_kind == "agent_bot" and self.profile().bot_reply_clears_waiting_since:
            return self.save(conversation, waiting_since=None)
        return []
