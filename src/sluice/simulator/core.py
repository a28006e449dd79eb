"""``ChatwootSimulator``: the fake Chatwoot used by demos, load tests and end-to-end tests.

Chatwoot itself cannot run here, so this is the one fake the project allows, and it is held
to the contract (``shared/docs/chatwoot-contract.md``): the same REST subset, auth rules,
errors and webhook shapes as the real thing. Tests drive it as the *customer* and the
*human agent* (``customer_message``, ``agent_message``, ``set_status``) while Sluice talks to
it over real HTTP as the bot; ``replies``/``wait_for_reply`` observe what Sluice answered.

Webhooks caused by a driver call are awaited by default (``wait=True``) so a test knows the
intake has seen the event when the call returns; webhooks caused by API calls (the bot's
echo, a status change made by Sluice) go out in the background, as Chatwoot sends them from
a job after answering the request. ``flush()`` waits for those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sluice.api.server import ApiServer
from sluice.simulator.config import SimulatorConfig
from sluice.simulator.state import (
    ACTIVITY,
    INCOMING,
    OUTGOING,
    STATUSES,
    Conversation,
    Message,
    SenderKind,
    Shapes,
    Store,
    iso,
)
from sluice.simulator.webhooks import Delivery, WebhookSender

log = logging.getLogger("sluice.simulator")


@dataclass(frozen=True)
class ApiCall:
    """One REST request as the simulator saw it (``route`` is the path template)."""

    method: str
    path: str
    route: str
    status: int
    token: str  # "user", "bot", "invalid" or "none"
    at: float
    body: Any = None


@dataclass
class Fault:
    """A scripted failure for the next ``remaining`` matching requests. ``after_processing``
    lets the request take effect and then answers with the error, like a proxy timing out
    after Chatwoot wrote the message: the ambiguous case idempotency keys exist for."""

    status: int
    remaining: int = 1
    path_contains: str | None = None
    method: str | None = None
    retry_after: float | None = None
    after_processing: bool = False

    def matches(self, method: str, path: str, after: bool) -> bool:
        return (
            self.remaining > 0
            and self.after_processing == after
            and (self.method is None or self.method.upper() == method)
            and (self.path_contains is None or self.path_contains in path)
        )


class RateLimiter:
    """rack-attack's throttle: a counter per client IP per fixed one-minute window.
    ``limit`` is a callable so a running simulator's config can be changed."""

    def __init__(self, limit: Callable[[], int], period_s: float = 60.0) -> None:
        self.limit = limit
        self.period_s = period_s
        self._counts: dict[tuple[str, int], int] = {}

    def hit(self, key: str, now: float) -> float | None:
        """Count a request; the seconds until the window resets when over the limit."""
        window = int(now // self.period_s)
        if len(self._counts) > 10_000:
            self._counts = {k: v for k, v in self._counts.items() if k[1] == window}
        count = self._counts.get((key, window), 0) + 1
        self._counts[(key, window)] = count
        if count > self.limit():
            return (window + 1) * self.period_s - now
        return None


class ChatwootSimulator:
    """In-memory Chatwoot with a FastAPI ``app``; see the module docstring."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        call_log_size: int = 100_000,
        webhook_log_size: int = 10_000,
    ):
        from sluice.simulator.app import build_app  # app.py imports this module

        self.config = config if config is not None else SimulatorConfig()
        self.store = Store(self.config)
        self.shapes = Shapes(self.store)
        self.webhooks = WebhookSender(self.config, log_size=webhook_log_size)
        self.rng = random.Random(self.config.seed)
        self.limiter = RateLimiter(lambda: self.config.rate_limit_per_min)
        self.faults: list[Fault] = []
        self.calls: deque[ApiCall] = deque(maxlen=call_log_size)
        self._activity = asyncio.Event()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.counters: Counter[str] = Counter()
        self.clock: Callable[[], float] = time.time
        # (account, conversation) -> [(after_message_id, future)], woken by new replies.
        self._waiters: dict[tuple[int, int], list[tuple[int, asyncio.Future[dict[str, Any]]]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: ApiServer | None = None
        self.app = build_app(self)

    # --- lifecycle ---------------------------------------------------------------------------

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve ``app`` with uvicorn in this event loop; returns the base URL."""
        if self._server is not None:
            raise RuntimeError("already serving")
        self._server = ApiServer(self.app, host, port)
        return await self._server.start()

    async def flush(self, timeout: float | None = 30.0) -> None:  # noqa: ASYNC109
        """Wait for background webhook deliveries (echoes, API-triggered status events)."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop serving, cancel pending deliveries, close the webhook client."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._server is not None:
            await self._server.stop()
            self._server = None
        await self.webhooks.aclose()
        for waiters in self._waiters.values():
            for _, future in waiters:
                future.cancel()
        self._waiters.clear()

    async def __aenter__(self) -> ChatwootSimulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- fault injection and observation ------------------------------------------------------

    def inject_fault(
        self,
        status: int,
        *,
        count: int = 1,
        path_contains: str | None = None,
        method: str | None = None,
        retry_after: float | None = None,
        after_processing: bool = False,
    ) -> Fault:
        """Answer the next ``count`` matching API requests with ``status``."""
        fault = Fault(status, count, path_contains, method, retry_after, after_processing)
        self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str, *, after: bool) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path, after):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def random_fault(self) -> Fault | None:
        """A fault drawn at the configured rates (seeded, so runs are reproducible)."""
        if not (self.config.rate_429 or self.config.rate_500):
            return None
        draw = self.rng.random()
        if draw < self.config.rate_429:
            return Fault(429, retry_after=self.config.injected_retry_after_s)
        if draw < self.config.rate_429 + self.config.rate_500:
            return Fault(500)
        return None

    def record(self, call: ApiCall) -> None:
        self.calls.append(call)
        self.requests[(f"{call.method} {call.route}", call.status)] += 1
        self._activity.set()  # wake wait_for_activity(); a fresh event for the next call
        self._activity = asyncio.Event()

    async def wait_for_activity(self, timeout: float) -> None:  # noqa: ASYNC109 - driver API
        """Until the next API call answered by the simulator (a reply, an assignment, a
        status change, a read), for a harness that waits for the system under test to
        settle; raises ``TimeoutError`` after ``timeout`` seconds without one."""
        async with asyncio.timeout(timeout):
            await self._activity.wait()

    def clear_calls(self) -> None:
        """Forget recorded API calls (e.g. after setup, before asserting "no API calls")."""
        self.calls.clear()

    def stats(self) -> dict[str, Any]:
        """Requests by route and status, webhooks sent/failed, injected errors, volumes."""
        by_route: dict[str, dict[int, int]] = {}
        for (route, status), count in sorted(self.requests.items()):
            by_route.setdefault(route, {})[status] = count
        conversations = self.store.all_conversations()
        return {
            "requests": by_route,
            "requests_total": sum(self.requests.values()),
            "rate_limited": self.counters["rate_limited"],
            "injected": {
                "429": self.counters["injected_429"],
                "500": self.counters["injected_500"],
                "other": self.counters["injected_other"],
            },
            "webhooks": self.webhooks.stats(),
            "conversations": len(conversations),
            "messages": sum(len(c.messages) for c in conversations),
            "replies": sum(
                1
                for c in conversations
                for m in c.messages
                if m.message_type == OUTGOING and not m.private
            ),
        }

    # --- shared domain operations (REST handlers and drivers) ---------------------------------

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

    def status_events(
        self, conversation: Conversation, status: str, *, snoozed_until: int | None = None
    ) -> list[dict[str, Any]]:
        """Apply a status change; the webhooks it causes (none if nothing changed)."""
        previous = conversation.status
        if status == previous:
            return []
        before = conversation.updated_at
        conversation.status = status
        conversation.snoozed_until = snoozed_until if status == "snoozed" else None
        conversation.updated_at = self.clock()
        if self.config.webhook_kind == "agent_bot":
            event = {"open": "conversation_opened", "resolved": "conversation_resolved"}
            name = event.get(status)
            return [self.shapes.conversation_event(conversation, name)] if name else []
        changed = [
            {"status": {"previous_value": previous, "current_value": status}},
            {
                "updated_at": {
                    "previous_value": iso(before),
                    "current_value": iso(conversation.updated_at),
                }
            },
        ]
        return [
            self.shapes.conversation_event(conversation, "conversation_status_changed", changed),
            self.shapes.conversation_event(conversation, "conversation_updated", changed),
        ]

    def updated_events(
        self, conversation: Conversation, attribute: str, previous: Any, current: Any
    ) -> list[dict[str, Any]]:
        """``conversation_updated`` for assignee/label changes (account webhooks only)."""
        if self.config.webhook_kind != "account" or previous == current:
            return []
        changed = [{attribute: {"previous_value": previous, "current_value": current}}]
        return [self.shapes.conversation_event(conversation, "conversation_updated", changed)]

    async def emit(
        self, payloads: list[dict[str, Any]], *, wait: bool, duplicate: bool = False
    ) -> list[Delivery]:
        """Send webhooks in order; awaited when ``wait``, else in a background task."""
        if not payloads:
            return []
        if wait:
            return await self._send_all(payloads, duplicate)
        task = asyncio.create_task(self._send_all(payloads, duplicate))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return []

    async def _send_all(self, payloads: list[dict[str, Any]], duplicate: bool) -> list[Delivery]:
        deliveries = []
        for payload in payloads:
            twice = duplicate or (
                self.config.duplicate_delivery_rate > 0
                and self.rng.random() < self.config.duplicate_delivery_rate
            )
            try:
                delivery = await self.webhooks.deliver(payload, duplicate=twice)
            except Exception:  # never let a delivery bug kill the driver or the API
                log.exception("webhook delivery crashed")
                continue
            deliveries.append(delivery)
            if not delivery.delivered and not delivery.skipped:
                await self._after_failed_delivery(payload)
        return deliveries

    async def _after_failed_delivery(self, payload: dict[str, Any]) -> None:
        """Chatwoot >= 4.7: a bot that finally fails on an incoming message of a pending
        conversation hands it to humans (status open plus an activity message)."""
        if not self.config.open_on_bot_failure or payload.get("event") != "message_created":
            return
        if payload.get("message_type") != "incoming":
            return
        account_id = (payload.get("account") or {}).get("id")
        display_id = (payload.get("conversation") or {}).get("id")
        if not isinstance(account_id, int) or not isinstance(display_id, int):
            return
        conversation = self.store.conversation(account_id, display_id)
        if conversation is None or conversation.status != "pending":
            return
        self.add_message(
            conversation,
            content="Conversation was transferred to an agent: the bot did not respond",
            message_type=ACTIVITY,
            sender_kind=None,
            sender_id=None,
        )
        await self.emit(self.status_events(conversation, "open"), wait=False)

    def _wake_waiters(self, conversation: Conversation, message: Message) -> None:
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

    # --- drivers --------------------------------------------------------------------------

    async def create_conversation(
        self,
        account_id: int,
        *,
        status: str = "pending",
        contact_name: str | None = None,
        wait: bool = True,
    ) -> int:
        """A new conversation (``conversation_created`` webhook); returns its display id."""
        if account_id not in self.store.accounts:
            raise LookupError(f"unknown account {account_id}")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        conversation = self.store.create_conversation(
            account_id, status=status, now=self.clock(), contact_name=contact_name
        )
        if self.config.webhook_kind == "account":
            event = self.shapes.conversation_event(conversation, "conversation_created")
            await self.emit([event], wait=wait)
        return conversation.display_id

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
        """The customer writes (``message_created``, incoming). A resolved conversation is
        reopened first (``pending`` in a bot inbox, else ``open``; snoozed -> ``open``), as
        Chatwoot does. Returns the message with ``received_at``."""
        conversation = self.conversation_or_raise(account_id, conversation_id)
        events: list[dict[str, Any]] = []
        if conversation.status == "resolved":
            reopened = "pending" if self.config.inbox_has_bot else "open"
            events += self.status_events(conversation, reopened)
        elif conversation.status == "snoozed":
            events += self.status_events(conversation, "open")
        message = self.add_message(
            conversation,
            content=content,
            message_type=INCOMING,
            sender_kind="contact",
            sender_id=conversation.contact.id,
            attachments=attachments,
        )
        events.append(self.shapes.message_webhook(message, conversation))
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
        """A human agent replies (or writes a private note) from the Chatwoot UI."""
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
        await self.emit([self.shapes.message_webhook(message, conversation)], wait=wait)
        return self.message_dict(message, conversation)

    async def set_status(
        self,
        account_id: int,
        conversation_id: int,
        status: str,
        *,
        snoozed_until: int | None = None,
        wait: bool = True,
    ) -> None:
        """An agent changes the status in the UI (``conversation_status_changed``)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        conversation = self.conversation_or_raise(account_id, conversation_id)
        events = self.status_events(conversation, status, snoozed_until=snoozed_until)
        await self.emit(events, wait=wait)

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
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        key = (account_id, conversation_id)
        entry = (after_message_id, future)
        self._waiters.setdefault(key, []).append(entry)
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(entry)
                if not waiters:
                    del self._waiters[key]


async def run_simulator(
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    ready: Callable[[str, ChatwootSimulator], None] | None = None,
) -> None:
    """Serve a simulator until cancelled (``sluice simulate``); ``ready`` gets the URL."""
    simulator = ChatwootSimulator(config)
    try:
        url = await simulator.serve(host, port)
        log.info("Chatwoot simulator listening on %s", url)
        if ready is not None:
            ready(url, simulator)
        await asyncio.Event().wait()
    finally:
        await simulator.aclose()
