"""The JSON shapes Chatwoot renders: webhook payloads, push format, REST responses.

Shapes matter: Sluice's intake must classify what the simulator sends exactly as it
classifies the real payloads in ``shared/fixtures/chatwoot``, so the builders follow
``Message#webhook_data`` (top-level ``message_type`` string, ISO ``created_at``, sender
without ``type`` for contacts, top-level ``account``) and the "push" format used inside
``conversation.messages[]`` and by the REST API (``message_type`` int, Unix-second
timestamps). Conversation events put the conversation itself at the top level (facts §3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sluice.simulator.state import (
    MESSAGE_TYPE_NAMES,
    Contact,
    Conversation,
    Message,
    Store,
    iso,
)
from sluice.simulator.versions import VersionProfile

SENDER_TYPES = {"contact": "Contact", "user": "User", "agent_bot": "AgentBot"}


class Shapes:
    """JSON renderers, bound to the store (names of accounts, agents, the bot) and to the
    version profile (which keys a release has)."""

    def __init__(self, store: Store, profile: Callable[[], VersionProfile]) -> None:
        self.store = store
        self.config = store.config
        self.profile = profile

    # --- people --------------------------------------------------------------------------

    def _account_ref(self, account_id: int) -> dict[str, Any]:
        return {"id": account_id, "name": self.store.accounts[account_id].name}

    @staticmethod
    def contact_push(contact: Contact) -> dict[str, Any]:
        return {
            "additional_attributes": {},
            "custom_attributes": dict(contact.custom_attributes),
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
            "custom_attributes": dict(contact.custom_attributes),
            "email": contact.email,
            "id": contact.id,
            "identifier": None,
            "name": contact.name,
            "phone_number": None,
            "thumbnail": "",
            "blocked": False,
        }

    def availability(self, user_id: int) -> str:
        """AvailabilityStatusable: ``offline`` without a live session (OnlineStatusTracker),
        else the stored status (online/busy/offline), facts §7."""
        agent = self.store.agents.get(user_id, {})
        if not agent.get("presence", True):
            return "offline"
        return str(agent.get("availability_status", "online"))

    def user_push(self, user_id: int) -> dict[str, Any]:
        agent = self.store.agents.get(user_id, {"id": user_id, "name": f"Agent {user_id}"})
        name = str(agent.get("name", ""))
        return {
            "id": user_id,
            "name": name,
            "available_name": name.split(" ")[0] if name else name,
            "avatar_url": "",
            "type": "user",
            "availability_status": self.availability(user_id),
            "thumbnail": "",
        }

    def bot_push(self) -> dict[str, Any]:
        return {
            "id": self.config.bot_id,
            "name": self.config.bot_name,
            "avatar_url": "",
            "type": "agent_bot",
        }

    def bot_slim(self) -> dict[str, Any]:
        """``agent_bot_slim``: the assignment response for an AgentBot (facts §5)."""
        return {
            "id": self.config.bot_id,
            "name": self.config.bot_name,
            "description": "",
            "thumbnail": "",
            "outgoing_url": self.config.webhook_url if self.config.mode == "agent_bot" else None,
            "bot_type": "webhook",
            "bot_config": {},
            "account_id": None,
        }

    def agent_record(self, user_id: int, account_id: int) -> dict[str, Any]:
        """``api/v1/models/_agent``: ``GET /agents`` and the assignment response (facts §7)."""
        agent = self.store.agents[user_id]
        name = str(agent.get("name", ""))
        return {
            "id": user_id,
            "account_id": account_id,
            "availability_status": self.availability(user_id),
            "auto_offline": True,
            "confirmed": True,
            "active": True,
            "email": agent.get("email"),
            "provider": "email",
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
            return self.bot_push()
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

    def actor(self, user_id: int | None) -> dict[str, Any]:
        """``user`` of typing events: the user's or the bot's webhook_data (facts §3)."""
        if user_id is None:
            return {"id": self.config.bot_id, "name": self.config.bot_name, "type": "agent_bot"}
        agent = self.store.agents.get(user_id, {})
        return {"id": user_id, "name": agent.get("name"), "email": agent.get("email"),
                "type": "user"}  # fmt: skip

    # --- messages and conversations ---------------------------------------------------------

    def message_push(self, message: Message, conversation: Conversation) -> dict[str, Any]:
        """Push format: ``conversation.messages[]`` in webhooks, and REST responses."""
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
            "status": message.status,
            "source_id": message.source_id,
            "content_type": message.content_type,
            "content_attributes": dict(message.content_attributes),
            "sender_type": SENDER_TYPES.get(message.sender_kind or ""),
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

    def assignee(self, conversation: Conversation) -> tuple[dict[str, Any] | None, str | None]:
        """``meta.assignee``/``assignee_type``: the bot if one is set, else the user (§10)."""
        if conversation.assignee_bot_id is not None:
            return self.bot_push(), "AgentBot"
        if conversation.assignee_id is not None:
            return self.user_push(conversation.assignee_id), "User"
        return None, None

    def conversation_data(self, conversation: Conversation) -> dict[str, Any]:
        """``Conversation#webhook_data`` (conversation events, ``message.conversation``) and
        the body of ``GET /conversations/{id}``."""
        contact = conversation.contact
        last = conversation.last_chat_message()
        assignee, assignee_type = self.assignee(conversation)
        team = (
            {"id": conversation.team_id, "name": f"Team {conversation.team_id}"}
            if conversation.team_id is not None
            else None
        )
        data: dict[str, Any] = {
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
                "assignee_type": assignee_type,
                "team": team,
                "hmac_verified": False,
            },
            "status": conversation.status,
            "custom_attributes": dict(conversation.custom_attributes),
            "snoozed_until": conversation.snoozed_until,
            "unread_count": conversation.unread_count(),
            "first_reply_created_at": (
                iso(conversation.first_reply_created_at)
                if conversation.first_reply_created_at is not None
                else None
            ),
            "priority": conversation.priority,
            # waiting_since.to_i: an integer, 0 when nil (facts §3).
            "waiting_since": int(conversation.waiting_since or 0),
            "agent_last_seen_at": int(conversation.agent_last_seen_at),
            "contact_last_seen_at": int(conversation.contact_last_seen_at),
            "last_activity_at": int(conversation.last_activity_at),
            "timestamp": int(conversation.last_activity_at),
            "created_at": int(conversation.created_at),
            "updated_at": round(conversation.updated_at, 3),
        }
        if self.store.accounts[conversation.account_id].sla_enabled:
            data.update(self.sla_data(conversation))
        if self.profile().conversation_account:
            # EventDataPresenter#webhook_data merging `account`: release not determinable
            # (facts §3); see VersionProfile.conversation_account.
            data["account"] = self._account_ref(conversation.account_id)
        return data

    def sla_data(self, conversation: Conversation) -> dict[str, Any]:
        """What the enterprise presenter merges into push_data when the account has the
        `sla` feature (enterprise/app/presenters/enterprise/conversations/
        event_data_presenter.rb): ``applied_sla`` (AppliedSla#push_event_data,
        enterprise/app/models/applied_sla.rb), ``sla_events`` and ``sla_policy_id``, nil and
        [] when no SLA applies. The due times are the newest version's: frt from the
        conversation's created_at, nrt from waiting_since (none while it is blank), plain
        time (a business-hours policy's due times would need the inbox's working hours,
        which the simulator does not model: it sends ``sla_only_during_business_hours`` as
        set and leaves the due times out, as an older version does)."""
        policy = conversation.sla_policy
        if policy is None:
            return {"applied_sla": None, "sla_events": [], "sla_policy_id": None}

        def due(start: float | None, threshold: float | None) -> int | None:
            if start is None or threshold is None:
                return None
            return int(start + threshold)

        applied: dict[str, Any] = {
            "id": conversation.applied_sla_id,
            "sla_id": policy.id,
            "sla_status": "active",
            "created_at": int(conversation.applied_sla_created_at),
            "updated_at": int(conversation.applied_sla_created_at),
            "sla_completed_at": None,
            "sla_description": "",
            "sla_name": policy.name,
            "sla_first_response_time_threshold": policy.first_response_time_threshold,
            "sla_next_response_time_threshold": policy.next_response_time_threshold,
            "sla_only_during_business_hours": policy.only_during_business_hours,
            "sla_resolution_time_threshold": policy.resolution_time_threshold,
        }
        if not policy.only_during_business_hours:
            applied["sla_frt_due_at"] = due(
                conversation.created_at, policy.first_response_time_threshold
            )
            applied["sla_nrt_due_at"] = due(
                conversation.waiting_since, policy.next_response_time_threshold
            )
            applied["sla_rt_due_at"] = due(
                conversation.created_at, policy.resolution_time_threshold
            )
        return {"applied_sla": applied, "sla_events": [], "sla_policy_id": policy.id}

    def message_webhook(
        self, message: Message, conversation: Conversation, event: str = "message_created"
    ) -> dict[str, Any]:
        """``Message#webhook_data`` plus ``event``; top-level ``account`` in every version."""
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
        for updates and status changes, ``changed_attributes``."""
        data = self.conversation_data(conversation)
        data["event"] = event
        if changed is not None:
            data["changed_attributes"] = changed
        return data

    def typing_event(
        self, conversation: Conversation, on: bool, user_id: int | None, private: bool
    ) -> dict[str, Any]:
        """``conversation_typing_on``/``_off``: {event, user, conversation, is_private}."""
        return {
            "event": "conversation_typing_on" if on else "conversation_typing_off",
            "user": self.actor(user_id),
            "conversation": self.conversation_data(conversation),
            "is_private": private,
        }
