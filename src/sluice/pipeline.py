"""The reply pipeline: the job handler that turns a burst of customer lines into one reply
in Chatwoot, or a handoff to a human.

Per turn (one batch of a conversation's waiting messages):
1. the bot answers only while the conversation is `pending` and no human took it over;
2. a broker is assigned (sticky per conversation) — a human broker means handoff;
3. the broker's handler answers within the SLA budget left (`broker_assigned`,
   `reply_generated` hops); a budget nearly spent, a customer asking for a human, or an AI
   that keeps failing hands the conversation off (assign a human, status `open`);
4. the reply is posted once: a retried turn first looks for its own reply in the
   conversation (`sluice_reply_id`), so a crash after posting never posts twice
   (`reply_sent` hop).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from sluice.broker.assignment import Assigner
from sluice.broker.base import CustomerLine, Handler, Reply, Turn, answer_or_handoff
from sluice.broker.config import Broker
from sluice.chatwoot.client import ChatwootClient
from sluice.conversations import Conversations
from sluice.queue.job import Job

log = logging.getLogger("sluice.pipeline")

HANDOFF_NOTE = "Handed off by Sluice: {reason}"


class ReplyPipeline:
    def __init__(
        self,
        *,
        client: ChatwootClient,
        conversations: Conversations,
        assigner: Assigner,
        handlers: Mapping[str, Handler] | Callable[[str], Handler],
        sla_budget_ms: float,
        handoff_budget_ms: float,
    ) -> None:
        self.client = client
        self.conversations = conversations
        self.assigner = assigner
        self._handlers = handlers
        self.sla_budget_ms = sla_budget_ms
        self.handoff_budget_ms = handoff_budget_ms

    def handler_for(self, broker: Broker) -> Handler:
        if callable(self._handlers):
            return self._handlers(broker.handler)
        return self._handlers[broker.handler]

    async def __call__(self, job: Job) -> None:
        first: dict[str, Any] = job.members[0].payload
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
        lines = [
            CustomerLine(
                message_id=int(p["message_id"]),
                content=p.get("content"),
                created_at_ms=float(p.get("created_at_ms") or job.hops.get("received", 0.0)),
                attachments=int(p.get("attachments") or 0),
            )
            for p in job.payloads
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
            reply = await answer_or_handoff(self.handler_for(broker), turn)
        job.mark("reply_generated")
        if not (await self.conversations.get(key)).bot_may_answer:
            job.mark("skipped")  # a human took over while we were thinking
            return
        if reply.handoff:
            # Hand off first: when the customer reads "connecting you", a human has it.
            await self._handoff(job, account_id, conversation_id, reply.reason or "handoff")
        if reply.content:
            await self._post_once(job, account_id, conversation_id, reply.content)
            job.mark("reply_sent")
            await self.conversations.remember(key, turn.text(), reply.content)

    async def _post_once(self, job: Job, account_id: int, conversation_id: int, text: str) -> None:
        reply_id = f"sluice-{job.id}"
        if job.attempt > 1 and await self.client.find_reply(account_id, conversation_id, reply_id):
            log.info("reply %s already posted by an earlier attempt; not posting again", reply_id)
            return
        await self.client.send_message(
            account_id,
            conversation_id,
            text,
            reply_id=reply_id,
            deadline=time.time() + 30,
        )

    async def _handoff(self, job: Job, account_id: int, conversation_id: int, reason: str) -> None:
        """Assign a human (least-loaded human broker; else Chatwoot's own routing) and open
        the conversation; the bot stays silent until it is `pending` again."""
        key = job.key
        human = await self.assigner.assign(key, kind="human")
        agent_id = human.agent_id if human is not None and human.kind == "human" else None
        if agent_id is not None:
            await self.client.assign(account_id, conversation_id, assignee_id=agent_id)
        await self.client.toggle_status(account_id, conversation_id, "open")
        await self.conversations.human_took_over(key, agent_id, reason)
        job.mark("handed_off")
        log.info("conversation %s handed off to %s: %s", key, agent_id or "Chatwoot", reason)
