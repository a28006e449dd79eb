"""The simulator's in-memory Chatwoot: accounts, agents, tokens, conversations, messages.

Plain data. What a change to a conversation *causes* (events, status side effects) lives in
:mod:`sluice.simulator.changes`; how it is rendered as JSON in :mod:`sluice.simulator.shapes`.
"""

from __future__ import annotations

import hmac
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sluice.simulator.config import SimulatorConfig

SenderKind = Literal["contact", "user", "agent_bot"]

INCOMING, OUTGOING, ACTIVITY, TEMPLATE = 0, 1, 2, 3
MESSAGE_TYPE_NAMES = {INCOMING: "incoming", OUTGOING: "outgoing", ACTIVITY: "activity",
                      TEMPLATE: "template"}  # fmt: skip
STATUSES = ("open", "pending", "resolved", "snoozed")  # Conversation status enum (facts §10)
PRIORITIES = ("low", "medium", "high", "urgent")  # Conversation priority enum (or null)
MESSAGE_STATUSES = ("sent", "delivered", "read", "failed")


def iso(t: float) -> str:
    """Chatwoot's ISO-8601 UTC with milliseconds, e.g. ``2026-03-10T08:14:02.517Z``."""
    stamp = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


@dataclass(frozen=True)
class Principal:
    """The owner of an API token: a user (with role) or the agent bot (``Current.user`` is
    set for both, facts §4)."""

    kind: Literal["user", "bot"]
    user_id: int | None = None
    role: str | None = None

    @property
    def is_agent(self) -> bool:
        return self.kind == "user" and self.role == "agent"


@dataclass
class Contact:
    id: int
    name: str
    email: str | None
    source_id: str
    contact_inbox_id: int
    created_at: float
    # Contact#custom_attributes (a CRM sync writes a customer tier there): rendered in
    # Contact#push_event_data / #webhook_data.
    custom_attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SlaPolicy:
    """An enterprise SLA policy (``enterprise/app/models/sla_policy.rb``): thresholds in
    seconds, None when the policy has none."""

    id: int
    name: str
    first_response_time_threshold: float | None = None
    next_response_time_threshold: float | None = None
    resolution_time_threshold: float | None = None
    only_during_business_hours: bool = False


@dataclass
class Message:
    id: int
    account_id: int
    conversation_id: int  # display id
    inbox_id: int
    content: str | None
    message_type: int
    private: bool
    content_type: str
    content_attributes: dict[str, Any]
    sender_kind: SenderKind | None
    sender_id: int | None
    created_at: float  # epoch seconds, exact
    attachments: list[dict[str, Any]] = field(default_factory=list)
    source_id: str | None = None
    status: str = "sent"


@dataclass
class Conversation:
    id: int  # internal, unique across accounts
    display_id: int  # per account; the id in API paths and webhooks
    account_id: int
    inbox_id: int
    contact: Contact
    status: str
    created_at: float
    updated_at: float
    assignee_id: int | None = None
    assignee_bot_id: int | None = None  # assignee_agent_bot_id (the bot owner)
    team_id: int | None = None
    labels: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    snoozed_until: int | None = None
    first_reply_created_at: float | None = None
    waiting_since: float | None = None
    priority: str | None = None
    custom_attributes: dict[str, Any] = field(default_factory=dict)
    sla_policy: SlaPolicy | None = None  # the conversation's AppliedSla (one policy)
    applied_sla_id: int | None = None
    applied_sla_created_at: float = 0.0
    agent_last_seen_at: float = 0
    contact_last_seen_at: float = 0

    @property
    def last_activity_at(self) -> float:
        return self.messages[-1].created_at if self.messages else self.created_at

    def last_chat_message(self) -> Message | None:
        """The last public, non-activity message: what Chatwoot puts in ``messages[]``."""
        for message in reversed(self.messages):
            if not message.private and message.message_type in (INCOMING, OUTGOING, TEMPLATE):
                return message
        return None

    def unread_count(self) -> int:
        count = 0
        for message in reversed(self.messages):
            if message.message_type == OUTGOING and not message.private:
                break
            if message.message_type == INCOMING:
                count += 1
        return count

    def message(self, message_id: int) -> Message | None:
        for message in self.messages:
            if message.id == message_id:
                return message
        return None


@dataclass
class Account:
    id: int
    name: str
    inbox_id: int
    inbox_name: str
    conversations: dict[int, Conversation] = field(default_factory=dict)
    next_display_id: int = 1
    # The enterprise `sla` feature (account.feature_enabled?('sla')): only then do
    # conversation payloads carry applied_sla, sla_events and sla_policy_id.
    sla_enabled: bool = False
    # The inbox's business hours (OutOfOffisable): Inbox#weekly_schedule, its timezone and
    # working_hours_enabled; the schedule every inbox is created with
    # (create_default_working_hours: Monday-Friday 9-17, weekends closed), off.
    working_hours_enabled: bool = False
    timezone: str = "UTC"
    working_hours: list[dict[str, Any]] = field(default_factory=lambda: default_working_hours())


def default_working_hours() -> list[dict[str, Any]]:
    """OutOfOffisable#create_default_working_hours, as Inbox#weekly_schedule renders it."""
    days = []
    for day in range(7):
        closed = day in (0, 6)
        days.append({
            "day_of_week": day, "closed_all_day": closed,
            "open_hour": None if closed else 9, "open_minutes": None if closed else 0,
            "close_hour": None if closed else 17, "close_minutes": None if closed else 0,
            "open_all_day": False,
        })  # fmt: skip
    return days


class Store:
    """All state. Message, conversation, contact and attachment ids are global (unique across
    accounts, as in Chatwoot's tables); conversation display ids count per account, so two
    accounts both have a conversation 1 - exactly the collision consumers must key around."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.accounts = {
            account_id: Account(
                id=account_id,
                name=f"Account {account_id}",
                inbox_id=index + 1,
                inbox_name="Website Chat",
            )
            for index, account_id in enumerate(config.accounts)
        }
        self.agents = {int(agent["id"]): dict(agent) for agent in config.agents}
        self.token_user_id = config.token_owner()
        self._tokens: list[tuple[str, Principal]] = [(config.api_token, self._owner_of_api())]
        if config.bot_token is not None:
            self._tokens.append((config.bot_token, Principal("bot")))
        for token, user_id in config.user_tokens.items():
            self._tokens.append((token, self._user(user_id)))
        self._conversation_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._contact_ids = itertools.count(1)
        self._attachment_ids = itertools.count(1)

    def _user(self, user_id: int) -> Principal:
        return Principal("user", user_id, str(self.agents[user_id].get("role", "agent")))

    def _owner_of_api(self) -> Principal:
        if self.config.api_token_kind == "bot":
            return Principal("bot")
        return self._user(self.token_user_id)

    def principal(self, token: str) -> Principal | None:
        """Who owns ``token`` (constant-time comparisons), or None for an unknown token."""
        found = None
        for known, owner in self._tokens:
            if hmac.compare_digest(known.encode(), token.encode()):
                found = owner
        return found

    def conversation(self, account_id: int, display_id: int) -> Conversation | None:
        account = self.accounts.get(account_id)
        return account.conversations.get(display_id) if account else None

    def conversation_keys(self) -> list[tuple[int, int]]:
        """``(account_id, display_id)`` of every conversation, for sweeps over all of them."""
        return [
            (a.id, display_id) for a in self.accounts.values() for display_id in a.conversations
        ]

    def all_conversations(self) -> list[Conversation]:
        return [c for a in self.accounts.values() for c in a.conversations.values()]

    def create_conversation(
        self, account_id: int, *, status: str, now: float, contact_name: str | None = None
    ) -> Conversation:
        account = self.accounts[account_id]
        contact_id = next(self._contact_ids)
        contact = Contact(
            id=contact_id,
            name=contact_name or f"Customer {contact_id}",
            email=f"customer{contact_id}@example.com",
            source_id=str(uuid.UUID(int=contact_id)),
            contact_inbox_id=contact_id,
            created_at=now,
        )
        conversation = Conversation(
            id=next(self._conversation_ids),
            display_id=account.next_display_id,
            account_id=account_id,
            inbox_id=account.inbox_id,
            contact=contact,
            status=status,
            created_at=now,
            updated_at=now,
            waiting_since=now,  # set when the conversation is created (facts §10)
        )
        account.next_display_id += 1
        account.conversations[conversation.display_id] = conversation
        return conversation

    def add_message(
        self,
        conversation: Conversation,
        *,
        content: str | None,
        message_type: int,
        sender_kind: SenderKind | None,
        sender_id: int | None,
        now: float,
        private: bool = False,
        content_type: str = "text",
        content_attributes: dict[str, Any] | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> Message:
        """Store a message. Its effects on the conversation's tracked attributes
        (waiting_since, first reply) are applied by ``Changes.after_message``."""
        message_id = next(self._message_ids)
        message = Message(
            id=message_id,
            account_id=conversation.account_id,
            conversation_id=conversation.display_id,
            inbox_id=conversation.inbox_id,
            content=content,
            message_type=message_type,
            private=private,
            content_type=content_type,
            content_attributes=dict(content_attributes or {}),
            sender_kind=sender_kind,
            sender_id=sender_id,
            created_at=now,
        )
        for raw in attachments or []:
            message.attachments.append(self._attachment(raw, message_id, conversation.account_id))
        conversation.messages.append(message)
        # Message#set_conversation_activity: update_columns, so no callbacks and no events.
        conversation.updated_at = now
        if message_type == INCOMING:
            conversation.contact_last_seen_at = now
        return message

    def _attachment(self, raw: dict[str, Any], message_id: int, account_id: int) -> dict[str, Any]:
        attachment_id = next(self._attachment_ids)
        name = str(raw.get("name") or f"file-{attachment_id}.jpg")
        base = "https://chatwoot.simulator.invalid/rails/active_storage"
        return {
            "id": attachment_id,
            "message_id": message_id,
            "file_type": raw.get("file_type", "image"),
            "account_id": account_id,
            "extension": raw.get("extension"),
            "data_url": raw.get("data_url", f"{base}/blobs/redirect/{name}"),
            "thumb_url": raw.get("thumb_url", f"{base}/representations/{name}"),
            "file_size": raw.get("file_size", 1024),
            "width": raw.get("width"),
            "height": raw.get("height"),
        }
