"""Deadlines from promises end to end: the Chatwoot simulator -> signed webhooks -> intake
-> queue -> broker -> Chatwoot API, with the deadline switches on.

Chatwoot before 4.16 clears ``waiting_since`` only on a *human* reply
(``bot_reply_clears_waiting_since`` in sluice.simulator.versions), so after the bot's
answer (agent-bot mode: Sluice posts as the agent bot) the conversation's next
``message_created`` still carries the first line's ``waiting_since``: the reply pipeline
records when Sluice answered, and the intake does not start the clock there (an event says
why). From 4.16 the bot's reply clears it, and the
next line starts a fresh wait that the intake believes."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from sluice.loadtest import LoadConfig, run_system_with_simulator
from sluice.service.runtime import Runtime
from sluice.settings.config import load_settings
from sluice.simulator import ChatwootSimulator
from sluice.simulator.state import SlaPolicy

from ..integration.conftest import delete_queue_keys

ACCOUNT = 7
ON = {"SLUICE_DEADLINE_FROM_WAITING_SINCE": "true", "SLUICE_DEADLINE_FROM_SLA": "true",
      "SLA_WARNING_THRESHOLD": "60000", "SLA_CRITICAL_THRESHOLD": "120000"}  # fmt: skip


@pytest.fixture
async def cleanup(redis_client: aioredis.Redis, queue_name: str) -> Any:
    yield
    await delete_queue_keys(redis_client, queue_name)


async def deadline_events(runtime: Runtime) -> list[dict[str, str]]:
    raw = await runtime.queue.redis.xrange(runtime.queue.keys.events)
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in raw
        if fields.get(b"type") == b"deadline"
    ]


async def turn(sim: ChatwootSimulator, conversation: int, text: str) -> dict[str, Any]:
    line = await sim.customer_message(ACCOUNT, conversation, text)
    await sim.wait_for_reply(ACCOUNT, conversation, after_message_id=line["id"], timeout=30)
    return line


@pytest.mark.usefixtures("cleanup")
@pytest.mark.parametrize(("version", "stale"), [("4.15", True), ("4.16", False)])
async def test_the_clock_ignores_a_waiting_since_sluice_already_answered(
    redis_url: str, queue_name: str, version: str, stale: bool
) -> None:
    cfg = LoadConfig(broker_latency_ms=10, chatwoot_version=version, mode="agent_bot")

    async def body(sim: ChatwootSimulator, runtime: Runtime, api_url: str) -> dict[str, Any]:
        conversation = await sim.create_conversation(ACCOUNT)
        await turn(sim, conversation, "Where is my order?")
        state = sim.conversation(ACCOUNT, conversation)
        assert (state["waiting_since"] != 0) is stale  # 4.15: not cleared by the bot's reply
        await turn(sim, conversation, "And can I change the address?")
        await sim.flush()
        notes = [e["info"] for e in await deadline_events(runtime)]
        refused = [n for n in notes if "waiting_since ignored: before Sluice's last answer" in n]
        assert bool(refused) is stale, notes
        return {}

    settings = load_settings({"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name, **ON})
    await run_system_with_simulator(settings, redis_url, cfg, body, queue=queue_name, extra_env=ON)


@pytest.mark.usefixtures("cleanup")
async def test_an_sla_policy_and_a_vip_rule_set_deadlines(
    redis_url: str, queue_name: str, tmp_path: Any
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: vip\n    when: {contact: {tier: vip}}\n    class: urgent\n")
    env = {**ON, "SLUICE_PRIORITY_RULES": str(rules)}
    cfg = LoadConfig(broker_latency_ms=10)

    async def body(sim: ChatwootSimulator, runtime: Runtime, api_url: str) -> dict[str, Any]:
        gold = await sim.create_conversation(ACCOUNT)
        sim.apply_sla(ACCOUNT, gold, SlaPolicy(1, "Gold", first_response_time_threshold=4.0))
        vip = await sim.create_conversation(ACCOUNT)
        sim.set_contact_attributes(ACCOUNT, vip, {"tier": "vip"})
        plain = await sim.create_conversation(ACCOUNT)
        jobs = {}
        for name, conversation in (("gold", gold), ("vip", vip), ("plain", plain)):
            line = await turn(sim, conversation, "Hello?")
            jobs[name] = f"cw-{line['id']}"
        await sim.flush()
        sources: dict[str, str] = {}
        for name, message_id in jobs.items():
            job_id = await runtime.queue.redis.get(runtime.queue.keys.dedupe(message_id))
            record = await runtime.queue.get_job(job_id.decode())
            assert record is not None
            sources[name] = record.notes.get("deadline", "")
        assert sources == {"gold": "applied_sla:first_response", "vip": "rule:vip",
                           "plain": "default"}  # fmt: skip
        return {}

    settings = load_settings({"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name, **env})
    await run_system_with_simulator(settings, redis_url, cfg, body, queue=queue_name, extra_env=env)
