"""The simulator's engine: state, the write paths shared by REST handlers and drivers, and
event dispatch (which receiver gets what, and what Chatwoot does when a delivery fails).

Webhooks caused by a driver call are awaited by default (``wait=True``) so a test knows the
receiver has seen the event when the call returns; webhooks caused by API calls go out in
the background, as Chatwoot sends them from jobs after answering the request.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from sluice.simulator.changes import Changes, Emission
from sluice.simulator.config import SimulatorConfig
from sluice.simulator.shapes import Shapes
from sluice.simulator.state import (
    ACTIVITY,
    OUTGOING,
    Conversation,
    Message,
    SenderKind,
    Store,
)
from sluice.simulator.versions import VersionProfile, profile_for
from sluice.simulator.webhooks import Delivery, WebhookSender

log = logging.getLogger("sluice.simulator")

# Webhooks::Trigger::SUPPORTED_ERROR_HANDLE_EVENTS (facts §1).
FAILURE_HANDLED_EVENTS = frozenset({"message_created", "message_updated"})
BOT_FAILURE_ACTIVITY = "Conversation was transferred to an agent: the bot did not respond"


class SimulatorBase:
    """State and dispatch; :class:`~sluice.simulator.core.ChatwootSimulator` adds drivers,
    the HTTP app and observation."""

    def __init__(self, config: SimulatorConfig | None, *, webhook_log_size: int) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.clock: Callable[[], float] = time.time
        self.store = Store(self.config)
        self.shapes = Shapes(self.store, lambda: self.profile)
        self.changes = Changes(self.config, self.shapes, lambda: self.profile, self._now)
        self.webhooks = WebhookSender(self.config, lambda: self.profile, log_size=webhook_log_size)
        self.rng = random.Random(self.config.seed)
        # (account, conversation) -> [(after_message_id, future)], woken by new replies.
        self._waiters: dict[tuple[int, int], list[tuple[int, asyncio.Future[dict[str, Any]]]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Called with every public reply as it is stored (the /_sim reply stream).
        self.reply_listeners: list[Callable[[dict[str, Any]], None]] = []

    def _now(self) -> float:
        return self.clock()

    @property
    def profile(self) -> VersionProfile:
        """The version profile of ``config.chatwoot_version``."""
        return profile_for(self.config.chatwoot_version)

    # --- shared write paths ---------------------------------------------------------------

    def conversation_or_raise(self, account_id: int, conversation_id: int) -> Conversation:
        conversation = self.store.conversation(account_id, conversation_id)
        if conversation is None:
            raise LookupError(f"no conversation {conversation_id} in account {account_id}")
        return conversation

    def message_dict(self, message: Message, conversation: Conversation) -> dict[str, Any]:
        """Push format plus the exact creation time in epoch seconds, as ``received_at``
        (when the simulated Chatwoot received it: for a reply, the moment the customer could
        see it) and as ``created_at_epoch`` (the push format's ``created_at`` is whole
        seconds)."""
        data = self.shapes.message_push(message, conversation)
        data["received_at"] = message.created_at
        data["created_at_epoch"] = message.created_at
        return data

    def add_message(
        self,
        conversation: Conversation,
        *,
        content: str | None,
        message_type: int,
        sender_kind: SenderKind | None,
        sender_id: int | None,
        private: bool = False,
        content_type: str = "text",
        content_attributes: dict[str, Any] | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> Message:
        """Store a message and wake reply waiters (callers add the message's events and
        ``changes.after_message``)."""
        message = self.store.add_message(
            conversation,
            content=content,
            message_type=message_type,
            sender_kind=sender_kind,
            sender_id=sender_id,
            now=self.clock(),
            private=private,
            content_type=content_type,
            content_attributes=content_attributes,
            attachments=attachments,
        )
        if message_type == OUTGOING and not private:
            self._wake_waiters(conversation, message)
        return message

    def message_events(
        self, conversation: Conversation, message: Message, event: str = "message_created"
    ) -> list[Emission]:
        """MESSAGE_CREATED, then what the message does to the conversation (dispatch order
        of Message#dispatch_create_events)."""
        payload = self.shapes.message_webhook(message, conversation, event)
        emitted = [Emission(payload, conversation)]
        if event == "message_created":
            emitted += self.changes.after_message(conversation, message)
        return emitted

    def status_events(
        self, conversation: Conversation, status: str, *, snoozed_until: int | None = None
    ) -> list[dict[str, Any]]:
        """Apply a bare status change; its payloads (kept for compatibility)."""
        changes = self.changes.set_status(conversation, status, snoozed_until=snoozed_until)
        return [e.payload for e in changes]

    # --- dispatch ---------------------------------------------------------------------------

    async def emit(
        self,
        events: Sequence[Emission | dict[str, Any]],
        *,
        wait: bool,
        duplicate: bool = False,
    ) -> list[Delivery]:
        """Deliver events in order to the configured receiver (those it gets in this version
        and mode); awaited when ``wait``, else in a background task."""
        emissions = [e if isinstance(e, Emission) else self._emission(e) for e in events]
        if not emissions:
            return []
        if wait:
            return await self._send_all(emissions, duplicate)
        task = asyncio.create_task(self._send_all(emissions, duplicate))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return []

    def _emission(self, payload: dict[str, Any]) -> Emission:
        """A bare payload: find its conversation for routing."""
        account = payload.get("account") or {}
        nested = payload.get("conversation")
        conversation_id = nested.get("id") if isinstance(nested, dict) else payload.get("id")
        if isinstance(account, dict) and isinstance(conversation_id, int):
            account_id = account.get("id")
            if isinstance(account_id, int):
                return Emission(payload, self.store.conversation(account_id, conversation_id))
        return Emission(payload)

    def routed(self, emission: Emission) -> bool:
        """Whether the receiver gets this event at all (no job is created otherwise)."""
        mode, event, payload = self.config.mode, emission.event, emission.payload
        if not self.profile.receives(mode, event):
            return False
        if event.startswith("message_") and payload.get("message_type") == "activity":
            return False  # MessageFilterHelpers#webhook_sendable?: never activity messages
        if mode == "account_webhook":
            subscriptions = self.config.webhook_subscriptions
            return subscriptions is None or event in subscriptions
        # AgentBotListener#agent_bots_for: the inbox's active bot plus the conversation's
        # assignee bot (facts §3); the conversation's status is not checked.
        conversation = emission.conversation
        owned = conversation is not None and conversation.assignee_bot_id == self.config.bot_id
        return self.config.inbox_has_bot or owned

    async def _send_all(self, emissions: list[Emission], duplicate: bool) -> list[Delivery]:
        deliveries = []
        for emission in emissions:
            if not self.routed(emission):
                self.webhooks.counters["filtered"] += 1
                continue
            twice = duplicate or (
                self.config.duplicate_delivery_rate > 0
                and self.rng.random() < self.config.duplicate_delivery_rate
            )
            try:
                delivery = await self.webhooks.deliver(emission.payload, duplicate=twice)
            except Exception:  # never let a delivery bug kill the driver or the API
                log.exception("webhook delivery crashed")
                continue
            deliveries.append(delivery)
            if not delivery.delivered and not delivery.skipped:
                await self._handle_failure(emission, delivery)
        return deliveries

    async def _handle_failure(self, emission: Emission, delivery: Delivery) -> None:
        """Webhooks::Trigger#handle_failure after the last attempt (facts §1): only for
        message_created/message_updated. An account webhook failure is only logged; an agent
        bot failure on a pending conversation opens it (PR #12379, 4.7) with an activity
        message, unless the account keeps it pending (PR #13512, 4.11+)."""
        if emission.event not in FAILURE_HANDLED_EVENTS:
            return
        if delivery.mode != "agent_bot":
            delivery.effect = "logged"
            return
        conversation = emission.conversation
        if conversation is None or conversation.status != "pending":
            delivery.effect = "none (not pending)"
            return
        if self.profile.keep_pending_flag and self.config.keep_pending_on_bot_failure:
            delivery.effect = "kept pending"
            return
        delivery.effect = "opened"
        self.add_message(
            conversation,
            content=BOT_FAILURE_ACTIVITY,
            message_type=ACTIVITY,
            sender_kind=None,
            sender_id=None,
        )
        # A bare open!: the bot owner stays (facts §5, fazer-ai issue #708).
        await self.emit(self.changes.set_status(conversation, "open"), wait=False)

    def _wake_waiters(self, conversation: Conversation, message: Message) -> None:
        if self.reply_listeners:
            reply = self.message_dict(message, conversation) | {
                "account_id": conversation.account_id,
                "conversation_id": conversation.display_id,
            }
            for listener in list(self.reply_listeners):
                listener(reply)
        key = (conversation.account_id, conversation.display_id)
        waiters = self._waiters.get(key)
        if not waiters:
            return
        remaining = []
        for after_id, future in waiters:
            if future.done():
                continue
            if message.id > after_id:
                future.set_result(self.message_dict(message, conversation))
            else:
                remaining.append((after_id, future))
        if remaining:
            self._waiters[key] = remaining
        else:
            del self._waiters[key]
