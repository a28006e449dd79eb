"""Drivers: tests play the *customer* and the *human agent* (and Chatwoot's own background
events), while the system under test talks to the simulator over real HTTP."""

from __future__ import annotations

from typing import Any

from sluice.simulator.config import AVAILABILITIES
from sluice.simulator.engine import SimulatorBase
from sluice.simulator.state import INCOMING, MESSAGE_STATUSES, OUTGOING, STATUSES, SlaPolicy


class SimulatorDrivers(SimulatorBase):
    """Customer, agent and Chatwoot-side actions, and what the customer saw."""

    async def create_conversation(
        self,
        account_id: int,
        *,
        status: str | None = None,
        contact_name: str | None = None,
        wait: bool = True,
    ) -> int:
        """A new conversation (``conversation_created``, account webhooks only); returns its
        display id. Without ``status``, Chatwoot's own: ``pending`` in an inbox with an active
        bot, else ``open``. From 4.16 (PR #14875) a pending conversation in a bot inbox is
        owned by the bot (``meta.assignee_type: "AgentBot"``)."""
        if account_id not in self.store.accounts:
            raise LookupError(f"unknown account {account_id}")
        if status is None:
            status = "pending" if self.config.inbox_has_bot else "open"
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        conversation = self.store.create_conversation(
            account_id, status=status, now=self.clock(), contact_name=contact_name
        )
        bot_inbox = self.config.inbox_has_bot
        if self.profile.bot_owned_conversations and bot_inbox and status == "pending":
            conversation.assignee_bot_id = self.config.bot_id
        event = self.shapes.conversation_event(conversation, "conversation_created")
        await self.emit([event], wait=wait)
        return conversation.display_id

    def apply_sla(self, account_id: int, conversation_id: int, policy: SlaPolicy) -> None:
        """Apply an SLA policy to a conversation, as Chatwoot's automation action
        ``add_sla`` does (an AppliedSla row; enterprise only). It turns the account's
        ``sla`` feature on. No webhook of its own: ``sla_policy_id`` is not among the
        attributes whose change fires ``conversation_updated`` (facts §3); the next
        event's payload carries it."""
        conversation = self.conversation_or_raise(account_id, conversation_id)
        self.store.accounts[account_id].sla_enabled = True
        conversation.sla_policy = policy
        conversation.applied_sla_id = conversation.id
        conversation.applied_sla_created_at = self.clock()

    def set_working_hours(
        self,
        account_id: int,
        *,
        enabled: bool = True,
        timezone: str = "UTC",
        days: list[dict[str, Any]] | None = None,
    ) -> None:
        """The inbox's business hours (Inbox#update_working_hours takes the same
        weekly_schedule rows; ``days`` replaces the rows of the days it names)."""
        account = self.store.accounts[account_id]
        account.working_hours_enabled = enabled
        account.timezone = timezone
        for row in days or []:
            day = int(row["day_of_week"])
            account.working_hours[day] = {**account.working_hours[day], **row}

    def set_contact_attributes(
        self, account_id: int, conversation_id: int, attributes: dict[str, Any]
    ) -> None:
        """The contact's custom attributes (a CRM sync writing a customer tier)."""
        conversation = self.conversation_or_raise(account_id, conversation_id)
        conversation.contact.custom_attributes.update(attributes)

    async def customer_message(
        self,
        account_id: int,
        conversation_id: int,
        content: str | None,
        *,
        attachments: list[dict[str, Any]] | None = None,
        duplicate: bool = False,
        wait: bool = True,
    ) -> dict[str, Any]:
        """The customer writes. Events in Chatwoot's order: the reopen of a resolved or
        snoozed conversation (Message#reopen_conversation), ``message_created``, then
        ``conversation_updated`` when ``waiting_since`` was blank. Returns the message with
        ``received_at``."""
        conversation = self.conversation_or_raise(account_id, conversation_id)
        events = list(self.changes.reopen_for_incoming(conversation))
        message = self.add_message(
            conversation,
            content=content,
            message_type=INCOMING,
            sender_kind="contact",
            sender_id=conversation.contact.id,
            attachments=attachments,
        )
        events += self.message_events(conversation, message)
        await self.emit(events, wait=wait, duplicate=duplicate)
        return self.message_dict(message, conversation)

    async def agent_message(
        self,
        account_id: int,
        conversation_id: int,
        content: str,
        *,
        agent_id: int | None = None,
        private: bool = False,
        wait: bool = True,
    ) -> dict[str, Any]:
        """A human agent replies (or writes a private note) from the Chatwoot UI: a human
        response (first reply, clears waiting_since) unless private."""
        conversation = self.conversation_or_raise(account_id, conversation_id)
        user_id = agent_id if agent_id is not None else self.store.token_user_id
        message = self.add_message(
            conversation,
            content=content,
            message_type=OUTGOING,
            sender_kind="user",
            sender_id=user_id,
            private=private,
        )
        await self.emit(self.message_events(conversation, message), wait=wait)
        return self.message_dict(message, conversation)

    async def set_status(
        self,
        account_id: int,
        conversation_id: int,
        status: str,
        *,
        snoozed_until: int | None = None,
        by_agent: int | None = None,
        wait: bool = True,
    ) -> None:
        """The status changes outside the API under test. Without ``by_agent`` a bare change
        (an automation, the console); with it, that agent pressed the button in the
        dashboard, which is ``toggle_status`` with their user: ending in ``open`` it runs the
        human-open rules (an agent-role user becomes the assignee; 4.16 releases the bot)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        conversation = self.conversation_or_raise(account_id, conversation_id)
        events = self.changes.set_status(conversation, status, snoozed_until=snoozed_until)
        if by_agent is not None and conversation.status == "open":
            role = str(self.store.agents[by_agent].get("role", "agent"))
            events += self.changes.human_open(conversation, by_agent, role)
        await self.emit(events, wait=wait)

    async def update_message_status(
        self,
        account_id: int,
        conversation_id: int,
        message_id: int,
        status: str,
        *,
        wait: bool = True,
    ) -> None:
        """A message's delivery status changes (sent/delivered/read/failed), as channels
        report it: ``message_updated`` (every Message update dispatches it, facts §1)."""
        if status not in MESSAGE_STATUSES:
            raise ValueError(f"status must be one of {MESSAGE_STATUSES}")
        conversation = self.conversation_or_raise(account_id, conversation_id)
        message = conversation.message(message_id)
        if message is None:
            raise LookupError(f"no message {message_id} in conversation {conversation_id}")
        if message.status == status:
            return
        message.status = status
        await self.emit(self.message_events(conversation, message, "message_updated"), wait=wait)

    def set_agent_availability(
        self, agent_id: int, status: str | None = None, *, connected: bool | None = None
    ) -> None:
        """Set an agent's stored availability (online/busy/offline) and/or whether they have
        a live dashboard session; without one ``GET /agents`` reports ``offline``."""
        agent = self.store.agents.get(agent_id)
        if agent is None:
            raise LookupError(f"unknown agent {agent_id}")
        if status is not None:
            if status not in AVAILABILITIES:
                raise ValueError(f"availability must be one of {AVAILABILITIES}")
            agent["availability_status"] = status
        if connected is not None:
            agent["presence"] = connected

    # --- observation -----------------------------------------------------------------------

    def conversation(self, account_id: int, conversation_id: int) -> dict[str, Any]:
        """The conversation as ``GET /conversations/{id}`` would show it."""
        conversation = self.conversation_or_raise(account_id, conversation_id)
        data = self.shapes.conversation_data(conversation)
        data["account_id"] = account_id
        return data

    def messages(self, account_id: int, conversation_id: int) -> list[dict[str, Any]]:
        """Every message of the conversation, oldest first (notes and activities too)."""
        conversation = self.conversation_or_raise(account_id, conversation_id)
        return [self.message_dict(m, conversation) for m in conversation.messages]

    def replies(self, account_id: int, conversation_id: int) -> list[dict[str, Any]]:
        """Outgoing public messages (what the customer saw), with ``received_at``."""
        conversation = self.conversation_or_raise(account_id, conversation_id)
        return [
            self.message_dict(m, conversation)
            for m in conversation.messages
            if m.message_type == OUTGOING and not m.private
        ]

    async def wait_for_reply(
        self,
        account_id: int,
        conversation_id: int,
        *,
        after_message_id: int,
        timeout: float,  # noqa: ASYNC109 - part of the driver API tests rely on
    ) -> dict[str, Any]:
        """The first public outgoing message with an id above ``after_message_id``; woken by
        the message itself (no polling). Raises ``TimeoutError``."""
        for reply in self.replies(account_id, conversation_id):
            if reply["id"] > after_message_id:
                return reply
        return await self.reply_waiters.wait(
            (account_id, conversation_id), after_message_id, timeout
        )
