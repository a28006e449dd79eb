"""Chatwoot webhook intake: verify, classify, deduplicate, stamp, enqueue.

The answer must come fast and must never be a 2xx for a message that was not stored, and
bad input must change nothing. Chatwoot sends account and API-inbox webhooks once, with a
5 s timeout, and never retries them; it retries agent-bot webhooks only on 429 and 500 and
opens the conversation for humans when they fail (docs/chatwoot-facts.md). So: limits and
content type first, then the signature over the raw bytes, then JSON, then one atomic
enqueue (idempotent on the message id) within ``store_timeout_s``; when Redis is slow or
down the verified webhook goes to the durable spool (:mod:`sluice.service.spool`) instead and is
answered 200 all the same, and the replayer moves it into the queue in arrival order once
Redis answers. While a webhook of a conversation is spooled, newer ones of that
conversation are spooled behind it, so its messages never overtake each other; other
conversations go straight to Redis. Only a spool that cannot be written
(a full disk) answers 503; without a spool (a library user's Intake) Redis trouble
answers 429 with Retry-After as before.

The SLA clock starts when the customer wrote, on our clock: Chatwoot stamps ``created_at``
and the signed ``X-Chatwoot-Timestamp`` with its own clock, so their difference is
Chatwoot's own delay whatever that clock's offset, and the message counts as written that
long before we received it. Without the header, ``created_at`` is taken as it is (a
Chatwoot clock that runs behind then looks like delay).

JSON is parsed strictly (:func:`parse_json`): what Chatwoot's Rails serializer emits is
accepted, anything a hostile or broken sender could use to make two parsers disagree or to
crash the parser (UTF-16, duplicate keys, NaN, absurd numbers, deep nesting) is a 400.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from sluice.chatwoot.payloads import (
    ConversationCreated,
    ConversationStatusChanged,
    HumanTakeover,
    Ignored,
    IncomingMessage,
    InvalidPayload,
    classify,
    human_assignee,
)
from sluice.chatwoot.replay import ReplayGuard
from sluice.chatwoot.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from sluice.deadlines.decide import DeadlinePolicy
from sluice.deadlines.inbox_hours import InboxHours
from sluice.queue.queue import Queue
from sluice.service.conversations import Conversations
from sluice.service.enqueue import MessageEnqueuer
from sluice.service.spool import Spool, SpooledWebhook, SpoolFullError
from sluice.service.spool_replay import SpoolReplayer
from sluice.service.strict_json import parse_json

log = logging.getLogger("sluice.intake")

REJECTED_KEEP = 1000
REJECTED_BODY_BYTES = 16_384
RETRY_AFTER_S = 3
UNSIGNED = (
    "Chatwoot sent this webhook without a signature. Chatwoot signs account webhooks from "
    "4.11.2 and agent-bot and API-inbox webhooks from 4.13; with an older Chatwoot unset "
    "CHATWOOT_WEBHOOK_SECRET (and keep the webhook URL secret), or upgrade Chatwoot"
)
# The whole answer must come well within Chatwoot's 5 s: Redis gets this long to store a
# webhook before it goes to the spool (which itself must answer within the rest).
STORE_TIMEOUT_S = 1.5
AGENT_REPLIED = "agent replied"


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class Intake:
    def __init__(
        self,
        queue: Queue,
        conversations: Conversations,
        *,
        secret: str | None,
        on_resolved: Callable[[str], Awaitable[object]] | None = None,
        max_body_bytes: int = 1_048_576,
        max_age_s: float = 300,
        default_account_id: int | None = None,
        clock: Callable[[], float] = time.time,
        spool: Spool | None = None,
        store_timeout_s: float = STORE_TIMEOUT_S,
        priority_from_chatwoot: bool = True,
        deadlines: DeadlinePolicy | None = None,
        inbox_hours: InboxHours | None = None,
    ) -> None:
        self.queue = queue
        self.conversations = conversations
        self.secret = secret
        self.max_body_bytes = max_body_bytes
        self.max_age_s = max_age_s
        self.default_account_id = default_account_id
        self.clock = clock
        self.on_resolved = on_resolved
        self.spool = spool
        self.store_timeout_s = store_timeout_s
        # Class and deadline from what was promised (sluice.service.enqueue).
        self._enqueuer = MessageEnqueuer(queue, priority_from_chatwoot, deadlines, inbox_hours)
        self._replays = ReplayGuard(queue.redis, queue.keys.replays, window_s=max_age_s)
        self._warned_unsigned = False
        self._warned_unsigned_chatwoot = False
        # Accounts this intake has seen in payloads that name theirs: conversation events
        # of versions without a top-level `account` fall back to the only one (see
        # _default_account).
        self._accounts: set[int] = set()
        self._rejected_key = queue.keys.intake_rejected

    async def handle(self, body: bytes, headers: Mapping[str, str]) -> Outcome:
        received_ms = self.clock() * 1000
        if self.secret:
            try:
                verify(self.secret, body, headers, now=self.clock(), max_age_s=self.max_age_s)
            except SignatureError as exc:
                if exc.code == "missing_signature" and not self._warned_unsigned_chatwoot:
                    # Not an attack, most likely: a Chatwoot too old to sign.
                    self._warned_unsigned_chatwoot = True
                    log.error("webhook unsigned while CHATWOOT_WEBHOOK_SECRET is set: %s", UNSIGNED)
                log.warning("webhook rejected: %s", exc)
                refusal = {"error": "invalid signature", "reason": str(exc)}
                if exc.code == "missing_signature":
                    refusal["hint"] = UNSIGNED
                return Outcome(401, refusal)
        elif not self._warned_unsigned:
            self._warned_unsigned = True
            log.warning(
                "CHATWOOT_WEBHOOK_SECRET is not set: webhooks are accepted unsigned; set it "
                "to the secret Chatwoot shows for this webhook"
            )
        try:
            payload = parse_json(body)
        except (ValueError, RecursionError) as exc:
            # ValueError includes UnicodeDecodeError and JSONDecodeError; RecursionError is
            # [[[[...]]]] deeper than the interpreter's stack: refuse, do not crash (500).
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
            log.warning(
                "webhook refused with 400, invalid JSON (%s), delivery %s",
                reason,
                _delivery_id(headers),
            )
            return Outcome(400, {"error": "invalid JSON", "reason": reason})
        delivery = _delivery_id(headers)
        sent_ms = chatwoot_sent_ms(headers)
        event = self._classify(payload)
        conversation = conversation_of(event)
        if self.spool is not None and self.spool.holds(conversation):
            # Older webhooks of this conversation wait in the spool: behind them (order).
            return await self._spool(
                body, headers, received_ms, conversation, "its conversation is spooled"
            )
        try:
            async with asyncio.timeout(self.store_timeout_s):
                return await self._dispatch(
                    event, payload, body, delivery, received_ms, sent_ms, signed=headers
                )
        except (RedisError, TimeoutError) as exc:
            reason = "Redis too slow" if isinstance(exc, TimeoutError) else f"Redis: {exc}"
            if self.spool is not None:
                return await self._spool(body, headers, received_ms, conversation, reason)
            log.error("cannot store webhook (%s): answering 429", reason)
            return Outcome(
                429,
                {"error": "temporarily unable to store the message; retry"},
                {"Retry-After": str(RETRY_AFTER_S)},
            )

    def _default_account(self) -> int | None:
        """CHATWOOT_ACCOUNT_ID, else the one account this intake has seen: conversation
        events carry a top-level ``account`` only in newer Chatwoot versions and, with an
        empty ``messages[]``, name no account at all (docs/chatwoot-facts.md section 3)."""
        if self.default_account_id is not None:
            return self.default_account_id
        return next(iter(self._accounts)) if len(self._accounts) == 1 else None

    async def _first_use(self, headers: Mapping[str, str]) -> bool:
        """Whether this signed request (its timestamp and signature) is new. A captured
        request re-sent with a new delivery id would otherwise undo a human takeover.
        While Redis cannot answer, the webhook is spooled unchecked (a replay sent during
        an outage passes; dedupe on the message id still keeps it from being queued twice)."""
        timestamp = headers.get(TIMESTAMP_HEADER.lower()) or headers.get(TIMESTAMP_HEADER)
        signature = headers.get(SIGNATURE_HEADER.lower()) or headers.get(SIGNATURE_HEADER)
        if not timestamp or not signature:
            return True
        return await self._replays.first_use(timestamp, signature)

    async def _spool(
        self,
        body: bytes,
        headers: Mapping[str, str],
        received_ms: float,
        conversation: str,
        reason: str,
    ) -> Outcome:
        assert self.spool is not None
        try:
            seq = await self.spool.append(body, headers, received_ms, conversation)
        except SpoolFullError as exc:
            log.critical("webhook LOST unless the sender retries: %s (%s)", exc, reason)
            return Outcome(
                503,
                {"error": "cannot store the message: Redis unavailable and the spool is full"},
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        log.warning("webhook spooled (%s): #%d, %d waiting", reason, seq, self.spool.depth)
        return Outcome(200, {"status": "spooled", "spooled": seq})

    async def replay_spool(self) -> None:
        """Move spooled webhooks into the queue for as long as the process runs
        (:class:`~sluice.service.spool_replay.SpoolReplayer`)."""
        assert self.spool is not None
        await SpoolReplayer(self.spool, self._replay).run()

    async def _replay(self, spooled: SpooledWebhook) -> None:
        payload = parse_json(spooled.body)  # it was parsed once already: it parses again
        delivery = _delivery_id(spooled.headers)
        sent_ms = chatwoot_sent_ms(spooled.headers)
        async with asyncio.timeout(self.store_timeout_s * 4):
            outcome = await self._dispatch(
                self._classify(payload),
                payload,
                spooled.body,
                delivery,
                spooled.received_ms,
                sent_ms,
            )
        log.info("spooled webhook #%d replayed: %s", spooled.seq, outcome.body.get("status"))

    def _classify(self, payload: Any) -> object:
        """The event a payload stands for, or the InvalidPayload that says why it is none
        (classified once per webhook: the spool's ordering and the dispatch both need it)."""
        try:
            return classify(payload, default_account_id=self._default_account())
        except InvalidPayload as exc:
            return exc

    async def _dispatch(
        self,
        event: object,
        payload: Any,
        body: bytes,
        delivery: str | None,
        received_ms: float,
        sent_ms: float | None = None,
        signed: Mapping[str, str] | None = None,
    ) -> Outcome:
        if delivery and await self.queue.redis.exists(self.queue.keys.delivery(delivery)):
            return Outcome(200, {"status": "duplicate", "delivery": delivery})
        if isinstance(event, InvalidPayload):
            await self._reject(str(event), body, delivery)
            return Outcome(422, {"error": "invalid payload", "reason": str(event)})
        if (
            signed is not None
            and self.secret
            and not isinstance(event, IncomingMessage)  # the message id dedupes those
            and not await self._first_use(signed)
        ):
            # Refused, but with a 2xx: any other answer to an agent-bot delivery makes
            # Chatwoot open the conversation, which is what a replay would want.
            log.warning("webhook refused: a replay of an earlier signed request")
            return Outcome(200, {"status": "ignored", "reason": "replay of an earlier request"})
        account = getattr(event, "account_id", None)
        if isinstance(account, int):
            self._accounts.add(account)
        outcome = await self._apply(event, received_ms, _has_assignee(payload), sent_ms)
        if delivery:
            await self.queue.redis.set(
                self.queue.keys.delivery(delivery), 1, px=self.queue.dedupe_ttl_ms
            )
        return outcome

    async def _apply(
        self, event: object, received_ms: float, assigned: bool, sent_ms: float | None = None
    ) -> Outcome:
        if isinstance(event, IncomingMessage):
            # When the customer wrote, on our clock (see the module docstring): Chatwoot's
            # own delay (both stamps on its clock) before our receive time.
            written_ms = event.created_at_ms
            if sent_ms is not None:
                written_ms = received_ms - max(0.0, sent_ms - event.created_at_ms)
            state = await self.conversations.get(event.key)
            status = event.conversation_status or state.status
            if state.human and status == "pending":
                # The message says pending: written after the takeover, an agent gave the
                # conversation back (assignee or not: `pending` is the bot's), even if that
                # status webhook has not arrived yet (no ordering); written before it, the
                # status it carries is already stale and changes nothing.
                if written_ms > state.handoff_at_ms:
                    await self.conversations.set_status(event.key, "pending")
                    state = await self.conversations.get(event.key)
            elif status is not None and status != state.status:
                await self.conversations.set_status(event.key, status)
                state = await self.conversations.get(event.key)
            # Not a conversation a person handles: one assigned to a User while open.
            human = state.human or (status == "open" and assigned)
            if human or not state.bot_may_answer:
                reason = "a human handles it" if human else f"conversation {status}"
                return Outcome(200, {"status": "ignored", "reason": reason})
            result = await self._enqueuer.enqueue(event, written_ms, received_ms, state)
            return Outcome(
                200,
                {"status": "duplicate" if result.duplicate else "queued", "job_id": result.job_id},
            )
        if isinstance(event, HumanTakeover):
            key = f"{event.account_id}:{event.conversation_id}"
            reason = AGENT_REPLIED if event.message_id else "assigned to an agent"
            await self.conversations.human_took_over(key, event.agent_id, reason)
            cancelled = await self.queue.cancel(key, reason="human took over")
            return Outcome(200, {"status": "human_takeover", "cancelled": cancelled})
        if isinstance(event, ConversationStatusChanged):
            key = f"{event.account_id}:{event.conversation_id}"
            if event.status == "resolved":
                await self.conversations.resolved(key)
            else:
                await self.conversations.set_status(key, event.status)
            cancelled = 0
            if event.status in ("resolved", "snoozed"):
                cancelled = await self.queue.cancel(key, reason=f"conversation {event.status}")
            if event.status == "resolved" and self.on_resolved is not None:
                await self.on_resolved(key)  # frees the broker's capacity
            return Outcome(200, {"status": f"conversation_{event.status}", "cancelled": cancelled})
        if isinstance(event, ConversationCreated):
            key = f"{event.account_id}:{event.conversation_id}"
            await self.conversations.set_status(key, event.status or "pending")
            return Outcome(200, {"status": "conversation_created"})
        if isinstance(event, Ignored):
            return Outcome(200, {"status": "ignored", "reason": event.reason})
        return Outcome(200, {"status": "ignored", "reason": type(event).__name__})

    async def _reject(self, reason: str, body: bytes, delivery: str | None) -> None:
        entry = json.dumps(
            {
                "at": self.clock(),
                "reason": reason,
                "delivery": delivery,
                "body": body[:REJECTED_BODY_BYTES].decode("utf-8", "replace"),
            }
        )
        pipe = self.queue.redis.pipeline(transaction=False)
        pipe.lpush(self._rejected_key, entry)
        pipe.ltrim(self._rejected_key, 0, REJECTED_KEEP - 1)
        await pipe.execute()
        log.warning("webhook payload rejected (%s); kept in the rejected log", reason)

    async def rejected(self, limit: int = 100) -> list[dict[str, Any]]:
        raw = await self.queue.redis.lrange(self._rejected_key, 0, limit - 1)
        return [json.loads(item) for item in raw]


def conversation_of(event: object) -> str:
    """The conversation a classified webhook is about (``"<account>:<conversation>"``), or
    "" when it is about none or could not be read (it then keeps no other webhook waiting)."""
    account = getattr(event, "account_id", None)
    conversation = getattr(event, "conversation_id", None)
    return f"{account}:{conversation}" if account and conversation else ""


def chatwoot_sent_ms(headers: Mapping[str, str]) -> float | None:
    """When Chatwoot sent this delivery, on Chatwoot's own clock: ``X-Chatwoot-Timestamp``
    (signed, Unix seconds; set again on each retry). None when absent or unreadable."""
    stamp = headers.get("x-chatwoot-timestamp")
    if not stamp:
        return None
    try:
        sent_s = float(stamp)
    except ValueError:
        return None
    return sent_s * 1000 if math.isfinite(sent_s) and sent_s > 0 else None


def _delivery_id(headers: Mapping[str, str]) -> str | None:
    value = headers.get("x-chatwoot-delivery")
    if value and 0 < len(value) <= 100 and value.replace("-", "").isalnum():
        return value
    return None


def _has_assignee(payload: Any) -> bool:
    """Whether the conversation in the payload is assigned to a person (an AgentBot
    assignee is the bot itself, see :func:`human_assignee`)."""
    if not isinstance(payload, dict):
        return False
    conversation = payload.get("conversation")
    return isinstance(conversation, dict) and human_assignee(conversation) is not None
