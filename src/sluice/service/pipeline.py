"""The reply pipeline: the job handler that turns a burst of customer lines into one reply
in Chatwoot, or a handoff to a human.

Per turn (one batch of a conversation's waiting messages):
1. the bot answers only while the conversation is `pending` and no human took it over;
2. a broker is assigned (sticky per conversation) — a human broker means handoff;
3. the broker's handler answers within the SLA budget left (`broker_assigned`,
   `reply_generated` hops); with circuit breakers on, an AI broker's handler runs behind
   its breaker, and while that is open the fallback (template or handoff) answers instead
   (:mod:`sluice.broker.guarded`; the job notes ``answered_by``); a budget nearly spent
   (before the handler runs, or when it failed and a retry could only hand off), a
   customer asking for a human, or an AI that keeps failing hands the conversation off
   (assign a human, status `open`);
4. the reply is posted once: every POST is fenced first (``Job.fence``: Redis confirms
   that this run still holds the turn's lease, records "reply in flight" and extends the
   lease past the POST's deadline), and the POST may not outlive that lease; a later run of
   the turn whose jobs carry an earlier fence first looks for that reply in the
   conversation (`sluice_reply_id`), so a crash or a stall after posting never posts twice
   (`reply_sent` hop); when the earlier attempt's Chatwoot call failed without an answer,
   its POST may still be on its way, so "not answered" needs a second look to agree. Every
   other effect (handoff) checks the lease first (``Job.guard``).

The window that remains: a process frozen (SIGSTOP, a VM pause) between the last lease
check inside the HTTP client and the request's bytes leaving the socket, for longer than the
rest of the fenced lease (the hold less the time already spent), sends its POST after the
lease ended. That gap is a few hundred microseconds of CPU per POST; docs/engine.md has
the arithmetic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from sluice import tracing
from sluice.broker.assignment import Assigner
from sluice.broker.base import (
    CustomerLine,
    HandlerError,
    Reply,
    ReplyHandler,
    Turn,
    answer_or_handoff,
)
from sluice.broker.breaker import BreakerBoard
from sluice.broker.config import Broker
from sluice.broker.guarded import GuardedHandler
from sluice.broker.meter import BrokerMeter, MeteredHandler
from sluice.chatwoot.client import ChatwootClient, may_still_land
from sluice.keys import split_job_id
from sluice.queue.job import Job
from sluice.service.conversations import Conversations
from sluice.service.message import CustomerMessage
from sluice.tracing import service as traced

log = logging.getLogger("sluice.pipeline")

HANDOFF_NOTE = "Handed off by Sluice: {reason}"
# Stamped on every reply beside sluice_reply_id: which run posted it (worker, reservation
# token, jobs, the fenced lease's end), so an audit of Chatwoot's messages can tell a reply
# from a runner whose lease had passed (tests/reliability/jepsen checks exactly that).
RUN_ATTRIBUTE = "sluice_run"
POST_BUDGET_S = 30.0  # the most a reply POST may take, retries included
FENCE_SLACK_S = 2.0  # the fence holds the lease this much past the client's request timeout
TYPING_AFTER_S = 0.5  # a broker slower than this shows the customer "typing..."


class ReplyPipeline:
    def __init__(
        self,
        *,
        client: ChatwootClient,
        conversations: Conversations,
        assigner: Assigner,
        handlers: Mapping[str, ReplyHandler] | Callable[[str], ReplyHandler],
        sla_budget_ms: float,
        handoff_budget_ms: float,
        agent_bot_id: int | None = None,
        breakers: BreakerBoard | None = None,
        fallback: ReplyHandler | None = None,
    ) -> None:
        if (breakers is None) != (fallback is None):
            raise ValueError("breakers and fallback go together (both or neither)")
        self.agent_bot_id = agent_bot_id
        self.breakers = breakers
        self.fallback = fallback
        # Per broker: the plain handler the guard was built around, and the guard.
        self._guarded: dict[str, tuple[ReplyHandler, GuardedHandler]] = {}
        self.client = client
        self.conversations = conversations
        self.assigner = assigner
        self._handlers = handlers
        self.sla_budget_ms = sla_budget_ms
        self.handoff_budget_ms = handoff_budget_ms
        # Every broker call's latency and outcome (429s apart), for the adaptive
        # concurrency controller: the worker flushes it with each heartbeat.
        self.broker_meter = BrokerMeter()

    def handler_for(self, broker: Broker) -> ReplyHandler:
        """The broker's handler; with circuit breakers on, an AI broker's behind its own
        breaker (:class:`~sluice.broker.guarded.GuardedHandler`), the fallback answering
        while it is open."""
        if callable(self._handlers):
            handler = self._handlers(broker.handler)
        else:
            handler = self._handlers[broker.handler]
        if self.breakers is None or self.fallback is None:
            return handler
        breaker = self.breakers.get(broker.name)
        if breaker is None:
            return handler
        built = self._guarded.get(broker.name)
        if built is None or built[0] is not handler:
            # The meter sits inside the breaker: the adaptive concurrency controller counts
            # the model's calls, not the fallback's instant answers while the breaker is open.
            metered = MeteredHandler(handler, self.broker_meter)
            built = (handler, GuardedHandler(metered, breaker, self.fallback))
            self._guarded[broker.name] = built
        return built[1]

    async def __call__(self, job: Job) -> None:
        if tracing.enabled:
            with traced.turn(job):  # docs/tracing.md: a child of the worker's process span
                await self._turn(job)
        else:
            await self._turn(job)

    async def _turn(self, job: Job) -> None:
        first = job.members[0].payload  # only the conversation is needed before the check
        account_id, conversation_id = int(first["account_id"]), int(first["conversation_id"])
        key = job.key
        state = await self.conversations.get(key)
        if not state.bot_may_answer:
            job.mark("skipped")
            log.info("turn of %s skipped: %s", key, "human" if state.human else state.status)
            return
        broker = await self.assigner.assign(key)
        if state.returned_to_bot and broker.kind == "human":
            # An agent handed the conversation back (status pending): an AI answers again.
            broker = await self.assigner.assign(key, kind="ai") or broker
            await self.conversations.bot_resumed(key)
        job.mark("broker_assigned")
        job.note("broker", broker.name)  # the job's timeline says which broker answered
        members = job.members
        if job.fenced_before or any(m.reservations > 1 for m in members):
            # This turn ran before and may have reached its POST (a fence of an earlier run
            # says so for sure; a crash, stall, hand-back or DLQ retry may have): answer
            # only what no earlier reply of ours covered, so nothing is posted twice and
            # nothing is skipped.
            members = await self._unanswered(account_id, conversation_id, members)
            if not members:
                log.info("turn of %s was already answered by an earlier attempt", key)
                return
        reply_id = f"sluice-{members[0].id}-{members[-1].id}"
        received_ms = job.hops.get("received", 0.0)
        messages = [
            CustomerMessage.from_payload(m.payload, received_ms=received_ms) for m in members
        ]
        lines = [
            CustomerLine(
                message_id=message.message_id,
                content=message.content,
                created_at_ms=message.created_at_ms,
                attachments=message.attachments,
            )
            for message in messages
        ]
        oldest = min(line.created_at_ms for line in lines)
        turn = Turn(
            account_id=account_id,
            conversation_id=conversation_id,
            key=key,
            lines=lines,
            history=await self.conversations.history(key),
            broker=broker,
            deadline_ms=oldest + self.sla_budget_ms,
            attempt=job.attempt,
            last_attempt=job.is_last_attempt,
        )
        if broker.kind == "human":
            reply = Reply(content=None, handoff=True, reason=f"assigned to {broker.name}")
        elif turn.remaining_ms() < self.handoff_budget_ms:
            reply = Reply(content=None, handoff=True, reason="SLA budget nearly spent")
        else:
            # The customer sees "typing..." while a broker that takes a while works (best
            # effort): a template answer within TYPING_AFTER_S costs no calls at all.
            typing = asyncio.create_task(self._typing_after(account_id, conversation_id))
            try:
                reply = await self._answer(broker, turn)
            finally:
                typing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    shown = await typing
                    if shown:
                        await self.client.set_typing(
                            account_id, conversation_id, False, deadline=_soon()
                        )
        job.mark("reply_generated")
        if reply.via:
            job.note("answered_by", reply.via)  # the circuit breaker's fallback answered
        if not (await self.conversations.get(key)).bot_may_answer:
            job.mark("skipped")  # a human took over while we were thinking
            return
        if reply.handoff:
            # Hand off first: when the customer reads "connecting you", a human has it.
            await self._handoff(job, account_id, conversation_id, reply.reason or "handoff")
        if reply.content:
            await self.client.send_message(
                account_id,
                conversation_id,
                reply.content,
                reply_id=reply_id,
                deadline=await self._fence(job),
                content_attributes={RUN_ATTRIBUTE: _run_marker(job)},
                as_agent_bot=self.agent_bot_id,
            )
            job.mark("reply_sent")
            await self.conversations.remember(
                key, turn.text(), reply.content, answered_at_ms=time.time() * 1000
            )

    async def _fence(self, job: Job) -> float:
        """Fence the POST (see the module docstring) and return its deadline (epoch s):
        the end of the fenced lease, so no attempt of the POST starts after another runner
        may own the turn."""
        await job.fence((self.client.timeout_s + FENCE_SLACK_S) * 1000)
        lease = job.lease
        budget = POST_BUDGET_S if lease is None else min(POST_BUDGET_S, lease.remaining_s)
        return time.time() + budget

    async def _typing_after(self, account_id: int, conversation_id: int) -> bool:
        await asyncio.sleep(TYPING_AFTER_S)
        return await self.client.set_typing(account_id, conversation_id, True, deadline=_soon())

    async def _available_human(self, key: str, account_id: int) -> int | None:
        """The agent id of the human broker for ``key``: the least-loaded one, or, when
        that agent is not online (Chatwoot: no live session), the least-loaded online one;
        None when no configured human is online (Chatwoot's own routing decides). When the
        token may not list agents (a bot token), availability is unknown and the
        least-loaded human is taken."""
        human = await self.assigner.assign(key, kind="human")
        if human is None or human.kind != "human" or human.agent_id is None:
            return None
        online = await self.client.online_agents(account_id)
        if online is None or human.agent_id in online:
            return human.agent_id
        loads = await self.assigner.loads()
        candidates = [
            b
            for b in self.assigner.brokers
            if b.kind == "human" and b.agent_id is not None and b.agent_id in online
        ]
        if not candidates:
            log.info("no human broker is online for %s: Chatwoot's routing decides", key)
            return None
        best = min(candidates, key=lambda b: loads.get(b.name, 0) / max(1, b.capacity))
        moved = await self.assigner.reassign(key, best.name)
        return moved.agent_id

    async def _answer(self, broker: Broker, turn: Turn) -> Reply:
        """The handler's reply (a final failure already becomes a handoff); a handler still
        running when the SLA budget is spent is cancelled and the turn handed off. A retryable
        failure goes back to the queue for a retry, unless less than the handoff budget is
        left: the retry could then only hand off, after its backoff, which is how a model
        that hangs until its budget-derived timeout got handed off after the SLA deadline
        instead of within it. Hand off now instead."""
        handler = self.handler_for(broker)
        if not isinstance(handler, GuardedHandler):  # a guard meters its inner calls itself
            handler = MeteredHandler(handler, self.broker_meter)
        budget = asyncio.timeout(turn.remaining_ms() / 1000)
        try:
            # A backstop for every handler, plug-ins included: one that never returns
            # (a hung socket without a timeout) would otherwise hold its slot, and the
            # conversation's lane, for ever while the heartbeat keeps its lease alive.
            async with budget:
                if tracing.enabled:
                    with traced.broker_call(broker.name, broker.kind, handler.name) as span:
                        reply = await answer_or_handoff(handler, turn)
                        traced.replied(span, reply.handoff)
                    return reply
                return await answer_or_handoff(handler, turn)
        except TimeoutError:
            if not budget.expired():
                raise  # the handler's own timeout, not the budget
            log.warning(
                "handler %s did not answer %s within the SLA budget: handing off",
                handler.name,
                turn.key,
            )
            return Reply(
                content=None,
                handoff=True,
                reason=f"{handler.name} did not answer within the SLA budget",
            )
        except HandlerError as exc:
            if turn.remaining_ms() >= self.handoff_budget_ms:
                raise
            log.warning(
                "handler %s failed for %s with the SLA budget nearly spent (%s): handing off",
                handler.name,
                turn.key,
                exc,
            )
            return Reply(
                content=None,
                handoff=True,
                reason=f"SLA budget nearly spent after {handler.name} failed: {exc}",
            )

    async def _unanswered(
        self, account_id: int, conversation_id: int, members: list[Job]
    ) -> list[Job]:
        """The members no earlier reply of ours covers. When the previous attempt's Chatwoot
        call failed without an answer (a timeout, a stalled link...), its POST may have
        been held up by that very fault and land as the link heals, racing this look: then
        "not answered" is believed only when a second look, the client's
        ``landing_grace_s`` later, agrees (the reliability tests saw the race post a reply
        twice)."""
        answered = await self._answered(account_id, conversation_id)
        left = [m for m in members if not _covered(split_job_id(m.id), answered)]
        grace = self.client.landing_grace_s
        if left and grace > 0 and any(may_still_land(m.last_error) for m in members):
            await asyncio.sleep(grace)
            answered = await self._answered(account_id, conversation_id)
            left = [m for m in members if not _covered(split_job_id(m.id), answered)]
        return left

    async def _answered(
        self, account_id: int, conversation_id: int
    ) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Job-id ranges our earlier replies in this conversation answered (from their
        `sluice_reply_id` markers, "sluice-<first job>-<last job>"), as (partition, number)
        pairs: a partitioned queue's ids are "<p>_<n>" (docs/partitions.md), and a range
        covers only ids of its own partition."""
        ranges = []
        # The latest 60 messages hold any reply of a recent attempt.
        messages = await self.client.recent_messages(account_id, conversation_id, pages=3)
        for message in messages:
            marker = (message.get("content_attributes") or {}).get("sluice_reply_id")
            if isinstance(marker, str) and marker.startswith("sluice-"):
                parts = marker.removeprefix("sluice-").split("-")
                if len(parts) == 2:
                    with contextlib.suppress(ValueError):
                        ranges.append((split_job_id(parts[0]), split_job_id(parts[1])))
        return ranges

    async def _handoff(self, job: Job, account_id: int, conversation_id: int, reason: str) -> None:
        """Open the conversation, then assign a human (the least-loaded human broker among
        the agents who are online; else Chatwoot's own routing); the bot stays silent until
        it is `pending` again.

        The order follows Chatwoot (docs/chatwoot-facts.md, sections 4-5): with a bot token,
        pending -> open is Chatwoot's own bot handoff (``bot_handoff!``); with a user token
        whose role is agent, opening assigns the conversation to that token's user,
        overwriting any assignee, so the chosen human is assigned after, not before."""
        key = job.key
        await job.guard()
        await self.client.toggle_status(account_id, conversation_id, "open")
        agent_id = await self._available_human(key, account_id)
        if agent_id is not None:
            await job.guard()
            await self.client.assign(account_id, conversation_id, assignee_id=agent_id)
        await self.conversations.human_took_over(key, agent_id, reason)
        job.mark("handed_off")
        log.info("conversation %s handed off to %s: %s", key, agent_id or "Chatwoot", reason)


def _soon() -> float:
    """A short deadline for best-effort calls (the typing indicator)."""
    return time.time() + 2.0


def _run_marker(job: Job) -> str:
    """``worker=<id>;lease_until_ms=<epoch ms>;jobs=<id>:<token>,...``: a flat string, as
    Chatwoot keeps any string in a message's content_attributes (see :func:`parse_run`)."""
    lease = job.lease
    until = f"{lease.until_ms:.3f}" if lease is not None and lease.until_ms else ""
    jobs = ",".join(f"{m.id}:{m.token}" for m in job.members)
    worker = lease.worker_id if lease is not None else ""
    return f"worker={worker};lease_until_ms={until};jobs={jobs}"


def parse_run(marker: object) -> dict[str, Any] | None:
    """A reply's ``sluice_run`` marker as ``{"worker", "lease_until_ms", "tokens"}`` (tokens:
    job id -> reservation token), or None when it is missing or malformed."""
    if not isinstance(marker, str):
        return None
    fields = dict(part.partition("=")[::2] for part in marker.split(";"))
    if not {"worker", "lease_until_ms", "jobs"} <= fields.keys():
        return None
    tokens = dict(ref.partition(":")[::2] for ref in fields["jobs"].split(",") if ref)
    until = fields["lease_until_ms"]
    return {
        "worker": fields["worker"],
        "lease_until_ms": float(until) if until else None,
        "tokens": tokens,
    }


def _covered(
    job_id: tuple[int, int], ranges: list[tuple[tuple[int, int], tuple[int, int]]]
) -> bool:
    return any(first <= job_id <= last for first, last in ranges)
