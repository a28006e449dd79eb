"""The Chatwoot simulator over real loopback HTTP: signed webhooks at a real receiver,
duplicate deliveries, the bot echo, status events, the agent-bot retry policy, rate limiting
and ``wait_for_reply``. Its payloads must classify like the real fixtures. The per-version
rules have their own files (test_simulator_delivery/events/api.py)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from sluice.chatwoot.client import ChatwootClient, ChatwootError
from sluice.chatwoot.payloads import (
    ConversationCreated,
    ConversationStatusChanged,
    HumanTakeover,
    Ignored,
    IncomingMessage,
    classify,
)
from sluice.chatwoot.signature import verify
from sluice.simulator import SimulatorConfig

from ..fixtures import CHATWOOT
from .test_simulator_harness import BOT_TOKEN, SECRET, USER_TOKEN, Env, Factory, simulators

FIXTURES = CHATWOOT


@pytest.fixture
async def make_env() -> AsyncIterator[Factory]:
    async with simulators() as make:
        yield make


@pytest.fixture
async def env(make_env: Factory) -> Env:
    return await make_env()


async def test_webhooks_arrive_signed_and_classify(env: Env) -> None:
    conversation_id = await env.sim.create_conversation(7)
    sent = await env.sim.customer_message(7, conversation_id, "Where is my order?")

    created, message = env.receiver.hits
    for hit in (created, message):
        verify(SECRET, hit.body, hit.headers, now=time.time())
        uuid.UUID(hit.headers["x-chatwoot-delivery"])
        assert hit.headers["content-type"] == "application/json"
    assert created.headers["x-chatwoot-delivery"] != message.headers["x-chatwoot-delivery"]

    assert classify(created.payload) == ConversationCreated(7, conversation_id, "pending")
    event = classify(message.payload)
    assert isinstance(event, IncomingMessage)
    assert event.key == f"7:{conversation_id}"
    assert event.message_id == sent["id"]
    assert event.content == "Where is my order?"
    assert event.conversation_status == "pending"
    assert event.created_at_ms == pytest.approx(sent["received_at"] * 1000, abs=1)


async def test_unsigned_without_secret(make_env: Factory) -> None:
    env = await make_env(webhook_secret=None)
    await env.sim.create_conversation(7)
    (hit,) = env.receiver.hits
    assert "x-chatwoot-signature" not in hit.headers
    assert "x-chatwoot-timestamp" not in hit.headers
    assert "x-chatwoot-delivery" in hit.headers


async def test_webhook_url_can_be_set_while_running(make_env: Factory) -> None:
    env = await make_env(webhook_url=None)
    await env.sim.create_conversation(7)
    assert env.receiver.hits == [] and env.sim.stats()["webhooks"]["skipped"] == 1
    env.sim.config.webhook_url = env.receiver.url
    await env.sim.create_conversation(7)
    assert len(env.receiver.hits) == 1


async def test_payload_shape_matches_the_fixtures(env: Env) -> None:
    conversation_id = await env.sim.create_conversation(7)
    await env.sim.customer_message(7, conversation_id, "hi", attachments=[{"file_type": "image"}])
    created, message = (hit.payload for hit in env.receiver.hits)
    fixture_message = json.loads((FIXTURES / "05_message_created_incoming_attachment_no_text.json")
                                 .read_text())  # fmt: skip
    fixture_created = json.loads((FIXTURES / "06_conversation_created.json").read_text())
    assert set(fixture_message) <= set(message)
    assert set(fixture_message["conversation"]) <= set(message["conversation"])
    assert set(fixture_message["sender"]) <= set(message["sender"])
    assert "type" not in message["sender"]  # contacts carry no type at top level
    assert set(fixture_message["attachments"][0]) <= set(message["attachments"][0])
    assert set(fixture_created) <= set(created)
    pushed = message["conversation"]["messages"][0]
    assert set(fixture_message["conversation"]["messages"][0]) <= set(pushed)
    assert pushed["message_type"] == 0 and isinstance(pushed["created_at"], int)
    assert message["message_type"] == "incoming" and message["created_at"].endswith("Z")


async def test_duplicate_delivery_reuses_the_delivery_id(env: Env) -> None:
    conversation_id = await env.sim.create_conversation(7)
    env.receiver.hits.clear()
    await env.sim.customer_message(7, conversation_id, "hello", duplicate=True)
    first, second = env.receiver.hits
    assert first.headers["x-chatwoot-delivery"] == second.headers["x-chatwoot-delivery"]
    assert first.body == second.body
    verify(SECRET, second.body, second.headers, now=time.time())
    assert env.sim.stats()["webhooks"]["duplicates"] == 1


async def test_bot_reply_produces_an_agent_bot_echo(env: Env) -> None:
    conversation_id = await env.sim.create_conversation(7)
    env.receiver.hits.clear()
    async with env.client(BOT_TOKEN) as bot, env.client() as user:
        await bot.send_message(7, conversation_id, "Bot answer")
        await user.send_message(7, conversation_id, "Human answer")
    await env.sim.flush()
    echoes = env.receiver.events("message_created")
    bot_echo, human = sorted(echoes, key=lambda h: int(h.payload["id"]))
    assert bot_echo.payload["sender"]["type"] == "agent_bot"
    assert bot_echo.payload["message_type"] == "outgoing"
    assert classify(bot_echo.payload) == Ignored("bot echo", "message_created")
    assert human.payload["sender"]["type"] == "user"
    assert isinstance(classify(human.payload), HumanTakeover)


async def test_status_change_webhooks(env: Env) -> None:
    conversation_id = await env.sim.create_conversation(7)
    env.receiver.hits.clear()
    await env.sim.set_status(7, conversation_id, "resolved")
    changed = env.receiver.events("conversation_status_changed")
    assert len(changed) == 1
    assert changed[0].payload["changed_attributes"][0] == {
        "status": {"previous_value": "pending", "current_value": "resolved"}
    }
    assert classify(changed[0].payload) == ConversationStatusChanged(
        7, conversation_id, "resolved", "pending", "conversation_status_changed"
    )
    assert len(env.receiver.events("conversation_updated")) == 1

    # Sluice's own handoff through the API is announced too (in the background).
    env.receiver.hits.clear()
    async with env.client(BOT_TOKEN) as bot:
        await bot.toggle_status(7, conversation_id, "open")
    await env.sim.flush()
    (handoff,) = env.receiver.events("conversation_status_changed")
    event = classify(handoff.payload)
    assert isinstance(event, ConversationStatusChanged)
    assert (event.status, event.previous_status) == ("open", "resolved")


async def test_customer_reopens_a_resolved_conversation(env: Env) -> None:
    conversation_id = await env.sim.create_conversation(7)
    await env.sim.set_status(7, conversation_id, "resolved")  # clears waiting_since
    env.receiver.hits.clear()
    await env.sim.customer_message(7, conversation_id, "one more thing")
    # The reopen, the message, then waiting_since (cleared on resolve) set again.
    assert [h.event for h in env.receiver.hits] == [
        "conversation_status_changed",
        "conversation_updated",
        "message_created",
        "conversation_updated",
    ]
    event = classify(env.receiver.hits[2].payload)
    assert isinstance(event, IncomingMessage) and event.conversation_status == "pending"


async def test_agent_bot_kind_sends_bot_events(make_env: Factory) -> None:
    # webhook_kind is the older name of mode; 4.10 bots get conversation_opened only.
    env = await make_env(webhook_kind="agent_bot", chatwoot_version="4.10")
    assert env.sim.config.mode == "agent_bot"
    conversation_id = await env.sim.create_conversation(7)
    assert env.receiver.hits == []  # agent bots get no conversation_created
    await env.sim.set_status(7, conversation_id, "open")
    (opened,) = env.receiver.hits
    assert classify(opened.payload, default_account_id=7) == ConversationStatusChanged(
        7, conversation_id, "open", None, "conversation_opened"
    )


async def test_webhook_retry_policy(make_env: Factory) -> None:
    # Agent bots only (PR #13521); account webhooks get one attempt (test_simulator_delivery).
    env = await make_env(mode="agent_bot", keep_pending_on_bot_failure=True)
    conversation_id = await env.sim.create_conversation(7)
    env.receiver.hits.clear()

    env.receiver.script = [500, 429]  # retried, then delivered
    await env.sim.customer_message(7, conversation_id, "a")
    assert len(env.receiver.hits) == 3
    assert len({h.headers["x-chatwoot-delivery"] for h in env.receiver.hits}) == 1
    for hit in env.receiver.hits:
        verify(SECRET, hit.body, hit.headers, now=time.time())

    env.receiver.hits.clear()
    env.receiver.script = [500, 500, 500, 500]  # three attempts, then given up
    await env.sim.customer_message(7, conversation_id, "b")
    assert len(env.receiver.events("message_created")) == 3

    env.receiver.hits.clear()
    env.receiver.script = [404, 503]  # other statuses are final
    await env.sim.customer_message(7, conversation_id, "c")
    await env.sim.customer_message(7, conversation_id, "d")
    assert len(env.receiver.events("message_created")) == 2

    webhooks = env.sim.stats()["webhooks"]
    assert webhooks["failed"] == 3 and webhooks["retried"] == 4


async def test_webhook_timeout_is_not_retried(make_env: Factory) -> None:
    env = await make_env(webhook_timeout_s=0.1)
    env.receiver.delay_s = 0.3
    await env.sim.create_conversation(7)
    assert len(env.receiver.hits) == 1
    (delivery,) = list(env.sim.webhooks.log)
    assert delivery.attempts == ["timeout"] and not delivery.delivered


async def test_final_bot_failure_opens_a_pending_conversation(make_env: Factory) -> None:
    env = await make_env(mode="agent_bot")
    conversation_id = await env.sim.create_conversation(7)
    env.receiver.script = [500, 500, 500]
    await env.sim.customer_message(7, conversation_id, "anyone?")
    await env.sim.flush()
    assert env.sim.conversation(7, conversation_id)["status"] == "open"
    assert env.sim.messages(7, conversation_id)[-1]["message_type"] == 2  # activity
    assert env.receiver.events("conversation_status_changed")


async def test_rate_limit_answers_429_with_retry_after(make_env: Factory) -> None:
    env = await make_env(rate_limit_per_min=3)
    conversation_id = await env.sim.create_conversation(7)
    path = f"/api/v1/accounts/7/conversations/{conversation_id}"
    async with httpx.AsyncClient(base_url=env.url) as http:
        statuses = []
        for _ in range(4):
            response = await http.get(path, headers={"api_access_token": USER_TOKEN})
            statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 429]
    assert response.text == "Retry later\n"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    stats = env.sim.stats()
    assert stats["rate_limited"] == 1
    assert stats["requests"][
        "GET /api/v1/accounts/{account_id}/conversations/{conversation_id}"
    ] == {
        200: 3,
        429: 1,
    }


async def test_random_faults_at_configured_rates(make_env: Factory) -> None:
    env = await make_env(rate_500=1.0)
    conversation_id = await env.sim.create_conversation(7)
    async with env.client() as client:
        with pytest.raises(ChatwootError) as info:
            await client.get_conversation(7, conversation_id)
    assert info.value.status == 500
    assert env.sim.stats()["injected"]["500"] == 1


async def test_auth_variants(env: Env) -> None:
    conversation_id = await env.sim.create_conversation(7)
    path = f"/api/v1/accounts/7/conversations/{conversation_id}"
    async with httpx.AsyncClient(base_url=env.url) as http:
        # Bearer is only PR #15941 (open): not accepted. The hyphenated header is.
        bearer = await http.get(path, headers={"Authorization": f"Bearer {USER_TOKEN}"})
        hyphen = await http.get(path, headers={"Api-Access-Token": USER_TOKEN})
        none = await http.get(path)
        bad = await http.get(path, headers={"api_access_token": "nope"})
        unknown_account = await http.get(
            f"/api/v1/accounts/99/conversations/{conversation_id}",
            headers={"api_access_token": USER_TOKEN},
        )
        bot_messages = await http.get(path + "/messages", headers={"api_access_token": BOT_TOKEN})
    assert bearer.status_code == 401
    assert hyphen.status_code == 200 and hyphen.json()["id"] == conversation_id
    assert none.status_code == 401
    assert bad.status_code == 401 and bad.json() == {"error": "Invalid Access Token"}
    assert unknown_account.status_code == 404
    assert bot_messages.status_code == 401
    assert "not authorized for bots" in bot_messages.json()["error"]
    assert [c.token for c in env.sim.calls] == ["none", "user", "none", "invalid", "user", "bot"]


async def test_calls_are_recorded_and_webhooks_make_none(env: Env) -> None:
    conversation_id = await env.sim.create_conversation(7)
    await env.sim.customer_message(7, conversation_id, "hi")
    assert list(env.sim.calls) == []  # driving the simulator is not an API call
    async with env.client() as client:
        await client.get_conversation(7, conversation_id)
    (call,) = env.sim.calls
    assert (call.method, call.status, call.token) == ("GET", 200, "user")
    assert call.route == "/api/v1/accounts/{account_id}/conversations/{conversation_id}"


async def test_ids_per_account_and_globally_unique_messages(env: Env) -> None:
    a = await env.sim.create_conversation(7)
    b = await env.sim.create_conversation(11)
    assert a == b == 1
    first = await env.sim.customer_message(7, a, "a")
    second = await env.sim.customer_message(11, b, "b")
    assert first["id"] != second["id"]
    keys = {classify(h.payload).key for h in env.receiver.events("message_created")}  # type: ignore[union-attr]
    assert keys == {"7:1", "11:1"}


async def test_wait_for_reply(env: Env) -> None:
    conversation_id = await env.sim.create_conversation(7)
    question = await env.sim.customer_message(7, conversation_id, "status?")
    await env.sim.agent_message(7, conversation_id, "internal", private=True)

    started = time.monotonic()
    # The waiter is registered on the task's first step, which runs before the reply's HTTP
    # round trip can complete: it is woken by the reply, not finding it already there.
    waiting = asyncio.create_task(
        env.sim.wait_for_reply(7, conversation_id, after_message_id=question["id"], timeout=2)
    )
    async with env.client(BOT_TOKEN) as bot:
        await bot.send_message(7, conversation_id, "Shipped yesterday.")
    reply = await waiting
    assert reply["content"] == "Shipped yesterday."
    assert time.monotonic() - started < 1.0
    assert question["received_at"] <= reply["received_at"] <= time.time()

    # Already there: returns at once. Nothing newer: times out.
    again = await env.sim.wait_for_reply(
        7, conversation_id, after_message_id=question["id"], timeout=0.01
    )
    assert again["id"] == reply["id"]
    with pytest.raises(TimeoutError):
        await env.sim.wait_for_reply(7, conversation_id, after_message_id=reply["id"], timeout=0.05)
    assert [r["content"] for r in env.sim.replies(7, conversation_id)] == ["Shipped yesterday."]


async def test_control_api(env: Env) -> None:
    headers = {"api_access_token": USER_TOKEN}
    async with httpx.AsyncClient(base_url=env.url, headers=headers) as http:
        created = await http.post("/_sim/accounts/7/conversations", json={})
        conversation_id = created.json()["id"]
        message = await http.post(
            f"/_sim/accounts/7/conversations/{conversation_id}/customer_message",
            json={"content": "from a load generator"},
        )
        stats = await http.get("/_sim/stats")
        refused = await http.get("/_sim/stats", headers={"api_access_token": BOT_TOKEN})
    assert message.status_code == 200 and message.json()["content"] == "from a load generator"
    assert stats.json()["webhooks"]["delivered"] == 2
    assert refused.status_code == 401
    assert list(env.sim.calls) == []


async def test_run_simulator_serves_until_cancelled() -> None:
    from sluice.simulator import run_simulator

    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_simulator(
            SimulatorConfig(api_token=USER_TOKEN),
            "127.0.0.1",
            0,
            ready=lambda url, _: ready.set_result(url),
        )
    )
    url = await asyncio.wait_for(ready, 5)
    async with ChatwootClient(url, USER_TOKEN) as client:
        assert len(await client.list_agents(7)) == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
