"""The simulator's in-memory Chatwoot: accounts, conversations, messages, and the JSON shapes
Chatwoot renders them in.

Shapes matter more than behaviour here: Sluice's intake must classify what the simulator
sends exactly as it classifies the real payloads in ``shared/fixtures/chatwoot``, so the
builders below follow ``Message#webhook_data`` (top-level ``message_type`` string,
ISO ``created_at``, sender without ``type`` for contacts) and the "push" format used inside
``conversation.messages[]`` and by the REST API (``message_type`` int, Unix-second
timestamps).
"""

from __future__ import annotations

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
STATUSES = ("open", "pending", "resolved", "snoozed")


def iso(t: float) -> str:
    """Chatwoot's ISO-8601 UTC with milliseconds, e.g. ``2026-03-10T08:14:02.517Z``."""
    stamp = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


@dataclass
class Contact:
    id: int
    name: str
    email: str | None
    source_id: str
    contact_inbox_id: int
    created_at: float


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
    team_id: int | None = None
    labels: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    snoozed_until: int | None = None
    first_reply_created_at: float | None = None
    waiting_since: float | None = None
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


@dataclass
class Account:
    id: int
    name: str
    inbox_id: int
    inbox_name: str
    conversations: dict[int, Conversation] = field(default_factory=dict)
    next_display_id: int = 1


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
        self.token_user_id = int(config.agents[0]["id"])
        self._conversation_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._contact_ids = itertools.count(1)
        self._attachment_ids = itertools.count(1)

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
            attachment_id = next(self._attachment_ids)
            name = str(raw.get("name") or f"file-{attachment_id}.jpg")
            base = "https://chatwoot.simulator.invalid/rails/active_storage"
            message.attachments.append(
                {
                    "id": attachment_id,
                    "message_id": message_id,
                    "file_type": raw.get("file_type", "image"),
                    "account_id": conversation.account_id,
                    "extension": raw.get("extension"),
                    "data_url": raw.get("data_url", f"{base}/blobs/redirect/{name}"),
                    "thumb_url": raw.get("thumb_url", f"{base}/representations/{name}"),
                    "file_size": raw.get("file_size", 1024),
                    "width": raw.get("width"),
                    "height": raw.get("height"),
                }
            )
        conversation.messages.append(message)
        conversation.updated_at = now
        if message_type == INCOMING:
            conversation.contact_last_seen_at = now
            if conversation.waiting_since is None:
                conversation.waiting_since = now
        elif message_type == OUTGOING and not private:
            if conversation.first_reply_created_at is None:
                conversation.first_reply_created_at = now
            conversation.waiting_since = None
        return message


class Shapes:
    """JSON renderers, bound to the store for names of accounts, agents and the bot."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.config = store.config

    # --- senders ---------------------------------------------------------------------------

    def _account_ref(self, account_id: int) -> dict[str, Any]:
        return {"id": account_id, "name": self.store.accounts[account_id].name}

    @staticmethod
    def contact_push(contact: Contact) -> dict[str, Any]:
        return {
            "additional_attributes": {},
            "custom_attributes": {},
            "email": contact.email,
            "id": contact.id,
            "identifier": None,
            "name": contact.name,
            "phone_number": None,
            "thumbnail": "",
            "blocked": False,
            "type": "contact",
        }

    def contact_webhook(self, contact: Contact, account_id: int) -> dict[str, Any]:
        """Top-level contact sender: carries ``account`` and no ``type`` key."""
        return {
            "account": self._account_ref(account_id),
            "additional_attributes": {},
            "avatar": "",
            "custom_attributes": {},
            "email": contact.email,
            "id": contact.id,
            "identifier": None,
            "name": contact.name,
            "phone_number": None,
            "thumbnail": "",
            "blocked": False,
        }

    def user_push(self, user_id: int) -> dict[str, Any]:
        agent = self.store.agents.get(user_id, {"id": user_id, "name": f"Agent {user_id}"})
        name = str(agent.get("name", ""))
        return {
            "id": user_id,
            "name": name,
            "available_name": name.split(" ")[0] if name else name,
            "avatar_url": "",
            "type": "user",
            "availability_status": agent.get("availability_status", "online"),
            "thumbnail": "",
        }

    def agent_record(self, user_id: int, account_id: int) -> dict[str, Any]:
        """``GET /agents`` / assignment response shape."""
        agent = self.store.agents[user_id]
        name = str(agent.get("name", ""))
        return {
            "id": user_id,
            "account_id": account_id,
            "availability_status": agent.get("availability_status", "online"),
            "auto_offline": True,
            "confirmed": True,
            "email": agent.get("email"),
            "available_name": name.split(" ")[0] if name else name,
            "name": name,
            "role": agent.get("role", "agent"),
            "thumbnail": "",
            "custom_role_id": None,
        }

    def _sender_push(self, message: Message, conversation: Conversation) -> dict[str, Any] | None:
        if message.sender_kind == "contact":
            return self.contact_push(conversation.contact)
        if message.sender_kind == "user" and message.sender_id is not None:
            return self.user_push(message.sender_id)
        if message.sender_kind == "agent_bot":
            return {
                "id": self.config.bot_id,
                "name": self.config.bot_name,
                "avatar_url": "",
                "type": "agent_bot",
            }
        return None

    def _sender_webhook(
        self, message: Message, conversation: Conversation
    ) -> dict[str, Any] | None:
        if message.sender_kind == "contact":
            return self.contact_webhook(conversation.contact, conversation.account_id)
        if message.sender_kind == "user" and message.sender_id is not None:
            agent = self.store.agents.get(message.sender_id, {})
            return {
                "id": message.sender_id,
                "name": agent.get("name", f"Agent {message.sender_id}"),
                "email": agent.get("email"),
                "type": "user",
            }
        if message.sender_kind == "agent_bot":
            return {"id": self.config.bot_id, "name": self.config.bot_name, "type": "agent_bot"}
        return None

    # --- messages and conversations ---------------------------------------------------------

    def message_push(self, message: Message, conversation: Conversation) -> dict[str, Any]:
        """Push format: ``conversation.messages[]`` in webhooks, and REST responses."""
        sender_type = {"contact": "Contact", "user": "User", "agent_bot": "AgentBot"}
        data: dict[str, Any] = {
            "id": message.id,
            "content": message.content,
            "account_id": message.account_id,
            "inbox_id": message.inbox_id,
            "conversation_id": message.conversation_id,
            "message_type": message.message_type,
            "created_at": int(message.created_at),
            "updated_at": iso(message.created_at),
            "private": message.private,
            "status": "sent",
            "source_id": message.source_id,
            "content_type": message.content_type,
            "content_attributes": dict(message.content_attributes),
            "sender_type": sender_type.get(message.sender_kind or ""),
            "sender_id": message.sender_id,
            "external_source_ids": {},
            "additional_attributes": {},
            "processed_message_content": message.content,
            "sentiment": {},
            "conversation": {
                "assignee_id": conversation.assignee_id,
                "unread_count": conversation.unread_count(),
                "last_activity_at": int(conversation.last_activity_at),
                "contact_inbox": {"source_id": conversation.contact.source_id},
            },
        }
        if message.attachments:
            data["attachments"] = [dict(a) for a in message.attachments]
        sender = self._sender_push(message, conversation)
        if sender is not None:
            data["sender"] = sender
        return data

    def conversation_data(self, conversation: Conversation) -> dict[str, Any]:
        """``Conversation#webhook_data`` (conversation events, ``message.conversation``) and
        the body of ``GET /conversations/{id}``."""
        contact = conversation.contact
        last = conversation.last_chat_message()
        assignee = (
            self.user_push(conversation.assignee_id)
            if conversation.assignee_id is not None
            else None
        )
        team = (
            {"id": conversation.team_id, "name": f"Team {conversation.team_id}"}
            if conversation.team_id is not None
            else None
        )
        return {
            "additional_attributes": {},
            "can_reply": True,
            "channel": "Channel::WebWidget",
            "contact_inbox": {
                "id": contact.contact_inbox_id,
                "contact_id": contact.id,
                "inbox_id": conversation.inbox_id,
                "source_id": contact.source_id,
                "created_at": iso(contact.created_at),
                "updated_at": iso(contact.created_at),
                "hmac_verified": False,
                "pubsub_token": contact.source_id.replace("-", "")[:24],
            },
            "id": conversation.display_id,
            "inbox_id": conversation.inbox_id,
            "messages": [self.message_push(last, conversation)] if last is not None else [],
            "labels": list(conversation.labels),
            "meta": {
                "sender": self.contact_push(contact),
                "assignee": assignee,
                "assignee_type": "User" if assignee is not None else None,
                "team": team,
                "hmac_verified": False,
            },
            "status": conversation.status,
            "custom_attributes": {},
            "snoozed_until": conversation.snoozed_until,
            "unread_count": conversation.unread_count(),
            "first_reply_created_at": (
                iso(conversation.first_reply_created_at)
                if conversation.first_reply_created_at is not None
                else None
            ),
            "priority": None,
            "waiting_since": int(conversation.waiting_since or 0),
            "agent_last_seen_at": int(conversation.agent_last_seen_at),
            "contact_last_seen_at": int(conversation.contact_last_seen_at),
            "last_activity_at": int(conversation.last_activity_at),
            "timestamp": int(conversation.last_activity_at),
            "created_at": int(conversation.created_at),
            "updated_at": round(conversation.updated_at, 3),
            "account": self._account_ref(conversation.account_id),
        }

    def message_webhook(
        self, message: Message, conversation: Conversation, event: str = "message_created"
    ) -> dict[str, Any]:
        """``Message#webhook_data`` plus ``event``, key order as in the fixtures."""
        account = self.store.accounts[conversation.account_id]
        data: dict[str, Any] = {
            "account": self._account_ref(conversation.account_id),
            "additional_attributes": {},
            "content_attributes": dict(message.content_attributes),
            "content_type": message.content_type,
            "content": message.content,
            "conversation": self.conversation_data(conversation),
            "created_at": iso(message.created_at),
            "id": message.id,
            "inbox": {"id": account.inbox_id, "name": account.inbox_name},
            "message_type": MESSAGE_TYPE_NAMES[message.message_type],
            "private": message.private,
            "sender": self._sender_webhook(message, conversation),
            "source_id": message.source_id,
        }
        if message.attachments:
            data["attachments"] = [dict(a) for a in message.attachments]
        data["event"] = event
        return data

    def conversation_event(
        self,
        conversation: Conversation,
        event: str,
        changed: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Conversation events: the conversation object at top level, plus ``event`` and,
        for updates, ``changed_attributes``."""
        data = self.conversation_data(conversation)
        data["event"] = event
        if changed is not None:
            data["changed_attributes"] = changed
        return data
