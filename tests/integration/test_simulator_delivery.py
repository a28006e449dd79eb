"""Webhook delivery as real Chatwoot does it, per receiver and version (docs/simulator.md,
rules 1, 2 and 8): one attempt for account webhooks; 429/500-only retries for agent bots and
what a final bot failure does to a pending conversation; signing and delivery ids from the
version that has them; the SSRF filter of 4.14."""

from __future__ import annotations

import asyncio
import itertools
import time
import types
import uuid
from collections.abc import AsyncIterator

import pytest

from sluice.chatwoot.signature import verify
from sluice.simulator import webhooks as webhooks_module

from .test_simulator_harness import SECRET, Env, Factory, simulators


@pytest.fixture
async def make_env() -> AsyncIterator[Factory]:
    async with simulators() as make:
        yield make


async def pending(env: Env) -> int:
    conversation_id = await env.sim.create_conversation(7)
    env.receiver.hits.clear()
    return conversation_id


# --- rule 1: account webhooks -----------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 404, 301])
async def test_account_webhook_gets_one_attempt_whatever_the_status(
    make_env: Factory, status: int
) -> None:
    env = await make_env(mode="account_webhook")
    conversation_id = await pending(env)
    env.receiver.script = [status, status, status]
    await env.sim.customer_message(7, conversation_id, "hello?")
    assert len(env.receiver.events("message_created")) == 1
    delivery = next(d for d in env.sim.webhooks.log if d.event == "message_created")
    assert delivery.attempts == [status]
    assert (delivery.outcome, delivery.effect) == ("failed", "logged")
    # An account webhook failure never touches the conversation.
    assert env.conversation(conversation_id)["status"] == "pending"
    assert env.sim.stats()["webhooks"]["retried"] == 0


async def test_account_webhook_timeout_and_refused_connection_are_lost(make_env: Factory) -> None:
    env = await make_env(webhook_timeout_s=0.1)
    env.receiver.delay_s = 0.3
    await env.sim.create_conversation(7)
    assert len(env.receiver.hits) == 1
    (delivery,) = env.sim.webhooks.log
    assert delivery.attempts == ["timeout"] and delivery.outcome == "failed"

    env.sim.config.webhook_url = "http://127.0.0.1:9/hook"  # nothing listens there
    await env.sim.create_conversation(7)
    refused = env.sim.webhooks.log[-1]
    assert refused.attempts == ["ConnectError"] and not refused.delivered


async def test_deliveries_run_on_sidekiq_threads_and_a_queued_job_does_not_time_out(
    make_env: Factory,
) -> None:
    # Ten messages at once on two "Sidekiq threads": two requests in flight at a time, and
    # the last ones wait ~1.2 s for a thread, longer than the 1 s timeout, yet arrive. (The
    # timeout leaves 0.7 s over the receiver's 0.3 s: a request that did time out would free
    # its thread while the receiver still works on it, as in Chatwoot, and then more than
    # two would be in flight at the receiver; the outcomes are checked first to say so.)
    env = await make_env(webhook_concurrency=2, webhook_timeout_s=1.0)
    conversations = [await env.sim.create_conversation(7) for _ in range(10)]
    env.receiver.delay_s = 0.3
    env.receiver.peak_in_flight = 0
    await asyncio.gather(*(env.sim.customer_message(7, c, "hello?") for c in conversations))
    created = [d for d in env.sim.webhooks.log if d.event == "message_created"]
    assert len(created) == 10
    assert all(d.outcome == "delivered" for d in created), [d.attempts for d in created]
    assert env.receiver.peak_in_flight == 2
    assert max(env.sim.stats()["webhooks"]["queued_ms"].values()) > 1_000  # waited > timeout


# --- rule 2: agent bots ------------------------------------------------------------------


async def test_bot_retries_429_and_500_ignoring_retry_after(make_env: Factory) -> None:
    env = await make_env(mode="agent_bot")
    conversation_id = await pending(env)
    env.receiver.script = [429, 500]
    env.receiver.headers = {"Retry-After": "30"}
    started = time.monotonic()
    await env.sim.customer_message(7, conversation_id, "hi")
    assert time.monotonic() - started < 5  # Retry-After: 30 was not honoured
    hits = env.receiver.events("message_created")
    assert len(hits) == 3
    assert len({h.headers["x-chatwoot-delivery"] for h in hits}) == 1
    delivery = next(d for d in env.sim.webhooks.log if d.event == "message_created")
    assert delivery.attempts == [429, 500, 200] and delivery.outcome == "delivered"
    assert env.conversation(conversation_id)["status"] == "pending"


async def test_bot_retries_are_resigned_with_a_fresh_timestamp(
    make_env: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = itertools.count(int(time.time()))
    monkeypatch.setattr(webhooks_module, "time", types.SimpleNamespace(time=lambda: next(clock)))
    env = await make_env(mode="agent_bot")
    conversation_id = await pending(env)
    env.receiver.script = [500, 500]
    await env.sim.customer_message(7, conversation_id, "hi")
    hits = env.receiver.events("message_created")
    timestamps = [int(h.headers["x-chatwoot-timestamp"]) for h in hits]
    assert len(set(timestamps)) == 3  # Time.now.to_i at each attempt
    assert len({h.headers["x-chatwoot-signature"] for h in hits}) == 3
    for hit, stamp in zip(hits, timestamps, strict=True):
        verify(SECRET, hit.body, hit.headers, now=stamp)
    uuid.UUID(hits[0].headers["x-chatwoot-delivery"])
    assert len({h.headers["x-chatwoot-delivery"] for h in hits}) == 1


@pytest.mark.parametrize(
    ("script", "attempts"),
    [
        ([500, 500, 500], [500, 500, 500]),  # retries exhausted
        ([429, 429, 429], [429, 429, 429]),
        ([503], [503]),  # any other non-2xx: no retry
        ([404], [404]),
        ([302], [302]),  # a redirect is not Net::HTTPSuccess
    ],
)
async def test_final_bot_failure_on_a_message_opens_pending(
    make_env: Factory, script: list[int], attempts: list[int]
) -> None:
    env = await make_env(mode="agent_bot")
    conversation_id = await pending(env)
    env.receiver.script = list(script)
    await env.sim.customer_message(7, conversation_id, "anyone?")
    await env.sim.flush()
    delivery = next(d for d in env.sim.webhooks.log if d.event == "message_created")
    assert delivery.attempts == attempts and delivery.effect == "opened"
    state = env.conversation(conversation_id)
    assert state["status"] == "open"
    # A bare open!: the bot stays the owner (4.16), so the conversation is not "unassigned".
    assert state["meta"]["assignee_type"] == "AgentBot"
    assert env.sim.messages(7, conversation_id)[-1]["message_type"] == 2  # activity
    # The open is announced to the bot itself (4.13+: status_changed and updated too).
    names = env.receiver.names()
    assert {"conversation_opened", "conversation_status_changed", "conversation_updated"} <= set(
        names
    )


async def test_bot_timeout_opens_pending_without_retry(make_env: Factory) -> None:
    env = await make_env(mode="agent_bot", webhook_timeout_s=0.1)
    conversation_id = await pending(env)
    env.receiver.delay_s = 0.3
    await env.sim.customer_message(7, conversation_id, "slow bot")
    await env.sim.flush()
    delivery = next(d for d in env.sim.webhooks.log if d.event == "message_created")
    assert delivery.attempts == ["timeout"]
    assert env.conversation(conversation_id)["status"] == "open"


async def test_keep_pending_on_bot_failure(make_env: Factory) -> None:
    env = await make_env(mode="agent_bot", keep_pending_on_bot_failure=True)
    conversation_id = await pending(env)
    env.receiver.script = [503]
    await env.sim.customer_message(7, conversation_id, "hi")
    await env.sim.flush()
    delivery = next(d for d in env.sim.webhooks.log if d.event == "message_created")
    assert delivery.effect == "kept pending"
    assert env.conversation(conversation_id)["status"] == "pending"


async def test_before_4_11_one_attempt_and_the_flag_does_not_exist(make_env: Factory) -> None:
    env = await make_env(
        mode="agent_bot", chatwoot_version="4.10", keep_pending_on_bot_failure=True
    )
    conversation_id = await pending(env)
    env.receiver.script = [500]
    await env.sim.customer_message(7, conversation_id, "hi")
    await env.sim.flush()
    assert len(env.receiver.events("message_created")) == 1  # #13521 not there yet
    assert env.conversation(conversation_id)["status"] == "open"  # #13512 not there yet


async def test_message_updated_failure_also_opens_pending(make_env: Factory) -> None:
    env = await make_env(mode="agent_bot")
    conversation_id = await pending(env)
    question = await env.sim.customer_message(7, conversation_id, "hi")
    env.receiver.script = [404]
    await env.sim.update_message_status(7, conversation_id, question["id"], "read")
    await env.sim.flush()
    (updated,) = env.receiver.events("message_updated")
    assert updated.payload["id"] == question["id"]
    assert env.conversation(conversation_id)["status"] == "open"


async def test_conversation_event_failures_are_retried_but_never_open(make_env: Factory) -> None:
    env = await make_env(mode="agent_bot")
    conversation_id = await pending(env)
    env.receiver.script = [500, 500, 500]
    await env.sim.set_status(7, conversation_id, "open")  # first event: conversation_opened
    await env.sim.set_status(7, conversation_id, "pending")
    await env.sim.flush()
    opened = next(d for d in env.sim.webhooks.log if d.event == "conversation_opened")
    assert opened.attempts == [500, 500, 500] and opened.effect is None
    assert env.conversation(conversation_id)["status"] == "pending"


async def test_failure_on_an_open_conversation_changes_nothing(make_env: Factory) -> None:
    env = await make_env(mode="agent_bot")
    conversation_id = await env.sim.create_conversation(7, status="open")
    env.receiver.script = [503]
    await env.sim.customer_message(7, conversation_id, "hi")
    delivery = next(d for d in env.sim.webhooks.log if d.event == "message_created")
    assert delivery.effect == "none (not pending)"
    assert env.conversation(conversation_id)["status"] == "open"


# --- rule 8: signing, per version and receiver --------------------------------------------


@pytest.mark.parametrize(
    ("version", "mode", "signed"),
    [
        ("4.10", "account_webhook", False),
        ("4.10", "agent_bot", False),
        ("4.11", "account_webhook", True),  # 4.11.2, PR #13573
        ("4.11", "agent_bot", False),
        ("4.12", "agent_bot", False),
        ("4.13", "agent_bot", True),  # PR #13892
        ("4.13", "account_webhook", True),
        ("4.16", "agent_bot", True),
    ],
)
async def test_signing_starts_with_the_version_that_signs(
    make_env: Factory, version: str, mode: str, signed: bool
) -> None:
    env = await make_env(chatwoot_version=version, mode=mode)
    conversation_id = await env.sim.create_conversation(7)
    await env.sim.customer_message(7, conversation_id, "hi")
    hit = env.receiver.events("message_created")[0]
    if signed:
        verify(SECRET, hit.body, hit.headers, now=time.time())
        uuid.UUID(hit.headers["x-chatwoot-delivery"])
    else:
        for header in ("x-chatwoot-signature", "x-chatwoot-timestamp", "x-chatwoot-delivery"):
            assert header not in hit.headers
    assert hit.headers["accept"] == "application/json"


async def test_delivery_id_without_a_secret(make_env: Factory) -> None:
    env = await make_env(webhook_secret=None, mode="agent_bot")
    conversation_id = await env.sim.create_conversation(7)
    await env.sim.customer_message(7, conversation_id, "hi")
    (hit,) = env.receiver.events("message_created")
    assert "x-chatwoot-signature" not in hit.headers
    uuid.UUID(hit.headers["x-chatwoot-delivery"])


# --- SafeFetch (4.14, PR #14155) -----------------------------------------------------------


async def test_private_urls_are_refused_from_4_14(make_env: Factory) -> None:
    env = await make_env(mode="agent_bot", safe_fetch_allow_private_network=False)
    conversation_id = await pending(env)
    await env.sim.customer_message(7, conversation_id, "hi")
    await env.sim.flush()
    assert env.receiver.hits == []  # refused before any request
    delivery = next(d for d in env.sim.webhooks.log if d.event == "message_created")
    assert (delivery.outcome, delivery.attempts) == ("blocked", ["UnsafeUrlError"])
    # For a bot this is a non-retryable failure: the pending conversation is opened.
    assert env.conversation(conversation_id)["status"] == "open"

    older = await make_env(
        mode="agent_bot", chatwoot_version="4.13", safe_fetch_allow_private_network=False
    )
    conversation_id = await pending(older)
    await older.sim.customer_message(7, conversation_id, "hi")
    assert len(older.receiver.events("message_created")) == 1
