"""A turn that runs again (hand-back at shutdown, crash after posting, a burst that grew
meanwhile) never posts a reply twice and never leaves a line unanswered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from sluice import Completion, Queue
from sluice.broker.assignment import Assigner
from sluice.broker.config import DEFAULT_BROKER
from sluice.broker.handlers import get_handler, load_handler_settings
from sluice.chatwoot.client import ChatwootClient
from sluice.service.conversations import Conversations
from sluice.service.pipeline import ReplyPipeline
from sluice.simulator import ChatwootSimulator, SimulatorConfig

from .test_recovery import expire_lease

ACCOUNT = 7


@dataclass
class Setup:
    sim: ChatwootSimulator
    pipeline: ReplyPipeline
    queue: Queue
    conversation: int

    async def say(self, text: str) -> None:
        """A customer line as the intake would enqueue it."""
        message = await self.sim.customer_message(ACCOUNT, self.conversation, text, wait=False)
        await self.queue.enqueue(
            f"{ACCOUNT}:{self.conversation}",
            {
                "account_id": ACCOUNT,
                "conversation_id": self.conversation,
                "message_id": message["id"],
                "content": text,
                "attachments": 0,
                "created_at_ms": float(message["created_at_epoch"]) * 1000,
            },
            id=f"cw-{message['id']}",
        )

    def markers(self) -> list[str]:
        return [
            (r.get("content_attributes") or {}).get("sluice_reply_id", "")
            for r in self.sim.replies(ACCOUNT, self.conversation)
        ]


@pytest.fixture
async def setup(queue: Queue) -> AsyncIterator[Setup]:
    sim = ChatwootSimulator(SimulatorConfig(api_token="tok"))
    url = await sim.serve()
    client = ChatwootClient(url, "tok")
    pipeline = ReplyPipeline(
        client=client,
        conversations=Conversations(queue.redis, queue.keys),
        assigner=Assigner(queue.redis, queue.keys, [DEFAULT_BROKER]),
        handlers={"template": get_handler("template", load_handler_settings({}))},
        sla_budget_ms=10_000,
        handoff_budget_ms=0,
    )
    conversation = await sim.create_conversation(ACCOUNT)
    try:
        yield Setup(sim, pipeline, queue, conversation)
    finally:
        await client.aclose()
        await sim.aclose()


async def test_handed_back_turn_is_not_posted_again(setup: Setup) -> None:
    await setup.say("Where is my order?")
    job = (await setup.queue.reserve(1, worker_id="w", batch=10)).jobs[0]
    await setup.pipeline(job)  # posted, then the worker shuts down before acknowledging
    assert job.notes == {"broker": DEFAULT_BROKER.name}  # the timeline names the broker
    await setup.queue.release([job])
    again = (await setup.queue.reserve(1, worker_id="w2", batch=10)).jobs[0]
    assert again.attempt == 1 and again.reservations == 2
    await setup.pipeline(again)
    assert len(setup.markers()) == 1


async def test_a_burst_that_grew_after_a_crash_answers_only_the_new_line(setup: Setup) -> None:
    await setup.say("Where is my order?")
    await setup.say("It was due yesterday.")
    job = (await setup.queue.reserve(1, worker_id="dead", batch=10)).jobs[0]
    assert len(job.members) == 2
    await setup.pipeline(job)  # replied to both, then the worker died
    await setup.say("Do you ship to Norway?")
    await expire_lease(setup.queue, job.id)
    again = (await setup.queue.reserve(1, worker_id="w2", batch=10)).jobs[0]
    assert len(again.members) == 3
    await setup.pipeline(again)
    first, last = (int(m.id) for m in (again.members[0], again.members[-1]))
    assert setup.markers() == [f"sluice-{first}-{first + 1}", f"sluice-{last}-{last}"]
    lost, _, _ = await setup.queue.complete(
        [Completion(m.id, m.token, m.marks) for m in again.members], worker_id="w2"
    )
    assert lost == []
