"""How the intake enqueues a customer message: its class, and its deadline from promises.

Every deadline switch off (docs/priorities.md): the class from the conversation's Chatwoot
priority (:func:`sluice.service.priorities.class_for`), the engine's deadline (the class's
target from when the message heads its lane), nothing else recorded, as before. A switch
on: :func:`sluice.deadlines.decide.decide` picks the class, target and the message's own
deadline from its conversation's facts; this module enqueues with them and records the
decision where an operator sees it: the job's note ``deadline`` (its source, on the
dashboard's timeline), the per-source count behind ``sluice_deadline_source_total``, and,
when notable (a rule or an SLA decided, or ``waiting_since`` was not believed), an event
``deadline`` in the queue's stream with the reason. Used only while a deadline switch is
on.
"""

from __future__ import annotations

from collections.abc import Callable

from sluice.chatwoot.payloads import IncomingMessage
from sluice.deadlines.business_hours import WorkingHours
from sluice.deadlines.decide import Deadline, DeadlinePolicy, decide
from sluice.deadlines.facts import ConversationFacts
from sluice.deadlines.inbox_hours import InboxHours
from sluice.queue.queue import Queue
from sluice.queue.types import Enqueued
from sluice.service.conversations import ConversationState
from sluice.service.message import CustomerMessage
from sluice.service.priorities import class_for

EVENT_INFO_CHARS = 300


class MessageEnqueuer:
    def __init__(
        self,
        queue: Queue,
        priority_from_chatwoot: bool = True,
        policy: DeadlinePolicy | None = None,
        inbox_hours: InboxHours | None = None,
    ) -> None:
        self.queue = queue
        self.use_priority = priority_from_chatwoot  # Chatwoot's priority picks the class
        self.policy = policy if policy is not None and policy.active else None
        self.inbox_hours = inbox_hours  # inboxes' working hours (business-hours SLAs)

    async def enqueue(
        self,
        event: IncomingMessage,
        written_ms: float,
        received_ms: float,
        conversation: ConversationState,
    ) -> Enqueued:
        """Enqueue one customer message with the deadline its promises give (the
        conversation's state says when Sluice last answered it)."""
        if self.policy is None:
            return await self.queue.add(
                event.key,
                CustomerMessage.of(event, written_ms).to_payload(),
                id=f"cw-{event.message_id}",
                priority=class_for(event.conversation_priority, enabled=self.use_priority),
                hops={"source_created": written_ms, "received": received_ms},
            )
        decision = decide(
            self.policy,
            event.facts if event.facts is not None else ConversationFacts(),
            written_ms=written_ms,
            chatwoot_written_ms=event.created_at_ms,
            answered_ms=conversation.answered_at_ms,
            hours=self._hours_of(event.account_id),
        )
        hops = {"source_created": written_ms, "received": received_ms}
        if decision.clock_start_ms < written_ms:
            hops["clock_start"] = decision.clock_start_ms  # the first unanswered line
        result = await self.queue.add(
            event.key,
            CustomerMessage.of(event, written_ms).to_payload(),
            id=f"cw-{event.message_id}",
            priority=decision.klass,
            hops=hops,
            target=decision.target_ms,
            due_in_ms=decision.due_in_ms(received_ms),
        )
        if not result.duplicate:
            await self._record(result.job_id, event.key, decision, received_ms)
        return result

    def _hours_of(self, account_id: int) -> Callable[[int], WorkingHours | None] | None:
        hours = self.inbox_hours
        if hours is None:
            return None
        return lambda inbox_id: hours.get(account_id, inbox_id)

    async def _record(self, job_id: str, key: str, decision: Deadline, received_ms: float) -> None:
        engine = self.queue.engine_of_job(job_id)
        pipe = self.queue.redis.pipeline(transaction=False)
        pipe.hset(engine.keys.job(job_id), "n:deadline", decision.source)
        pipe.hincrby(self.queue.keys.deadline_sources, decision.source, 1)
        if decision.notable:
            pipe.xadd(
                engine.keys.events,
                {
                    "type": "deadline",
                    "job": job_id,
                    "key": key,
                    "info": reason(decision, received_ms),
                },
                maxlen=10_000,
                approximate=True,
            )
        await pipe.execute()


def reason(decision: Deadline, received_ms: float) -> str:
    """The event's ``info``: source, class, target, when due, and why the clock and the SLA
    counted as they did."""
    parts = [decision.source, f"class {decision.klass}"]
    if decision.target_ms is not None:
        parts.append(f"target {decision.target_ms} ms")
    due_in = decision.due_in_ms(received_ms)
    if due_in is not None:
        parts.append(f"due in {due_in:.0f} ms")
    if decision.clock_note != "message":
        parts.append(decision.clock_note)
    if decision.sla_note:
        parts.append(decision.sla_note)
    return "; ".join(parts)[:EVENT_INFO_CHARS]
