"""The simulator's SLA and contact-attribute shapes, read back by Sluice's own reader: an
account without the enterprise `sla` feature sends no SLA keys; with it, every
conversation payload carries applied_sla / sla_events / sla_policy_id (nil and [] without
a policy), due times counted as AppliedSla#frt_due_at / #nrt_due_at count them; the
contact's custom attributes ride in meta.sender."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sluice.chatwoot.payloads import IncomingMessage, classify
from sluice.simulator.state import SlaPolicy

from .test_simulator_harness import Factory, simulators


@pytest.fixture
async def make_env() -> AsyncIterator[Factory]:
    async with simulators() as make:
        yield make


async def test_applied_sla_and_contact_attributes_reach_the_webhook(make_env: Factory) -> None:
    env = await make_env()
    plain = await env.sim.create_conversation(7)
    await env.sim.customer_message(7, plain, "no sla feature yet")
    assert "applied_sla" not in env.receiver.hits[-1].payload["conversation"]

    conversation = await env.sim.create_conversation(7)
    policy = SlaPolicy(2, "Gold", first_response_time_threshold=60.0,
                       next_response_time_threshold=30.0)  # fmt: skip
    env.sim.apply_sla(7, conversation, policy)
    env.sim.set_contact_attributes(7, conversation, {"tier": "vip"})
    await env.sim.customer_message(7, conversation, "hello")
    body = env.receiver.hits[-1].payload
    assert body["conversation"]["sla_policy_id"] == 2
    event = classify(body)
    assert isinstance(event, IncomingMessage) and event.facts is not None
    facts = event.facts
    assert facts.contact == {"tier": "vip"}
    assert facts.sla is not None and facts.sla.name == "Gold"
    assert facts.sla.first_response_s == 60.0 and facts.first_reply_ms is None
    created = body["conversation"]["created_at"]
    assert facts.sla.frt_due_ms == (created + 60) * 1000

    # A human reply clears waiting_since; the next line sets it again (after its own
    # message_created, docs/simulator.md), so the second line of the burst carries it, and
    # the next response is due 30 s after the first.
    await env.sim.agent_message(7, conversation, "on it", agent_id=24)
    first = await env.sim.customer_message(7, conversation, "thanks")
    await env.sim.customer_message(7, conversation, "and?")
    body = [h.payload for h in env.receiver.hits if h.payload.get("event") == "message_created"][-1]
    event = classify(body)
    assert isinstance(event, IncomingMessage) and event.facts is not None
    since = body["conversation"]["waiting_since"]
    assert event.facts.first_reply_ms is not None and since == int(first["created_at"])
    assert event.facts.sla is not None and event.facts.sla.nrt_due_ms == (since + 30) * 1000

    # The plain conversation now shows the feature's keys, empty.
    await env.sim.customer_message(7, plain, "again")
    other = env.receiver.hits[-1].payload["conversation"]
    assert (
        other["applied_sla"] is None
        and other["sla_events"] == []
        and other["sla_policy_id"] is None
    )
