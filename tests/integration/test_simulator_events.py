"""Which events real Chatwoot sends, to whom, and in what shape (docs/simulator.md, rules 3
and 9): conversation_updated on every tracked change (waiting_since above all), status
events per receiver and version, the conversation at the top level, top-level ``account``
per version, subscriptions, and what is never sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sluice.chatwoot.payloads import ConversationStatusChanged, Ignored, classify

from .test_simulator_harness import BOT_TOKEN, USER_TOKEN, Factory, simulators


@pytest.fixture
async def make_env() -> AsyncIterator[Factory]:
    async with simulators() as make:
        yield make


def changed(payload: dict[str, Any]) -> dict[str, Any]:
    """``changed_attributes`` as one dict (without updated_at)."""
    merged: dict[str, Any] = {}
    for entry in payload["changed_attributes"]:
        merged.update(entry)
    merged.pop("updated_at", None)
    return merged


async def test_waiting_since_moves_conversation_updated_on_almost_every_turn(
    make_env: Factory,
) -> None:
    env = await make_env()
    conversation_id = await env.sim.create_conversation(7)
    created = env.receiver.hits[0].payload
    assert isinstance(created["waiting_since"], int) and created["waiting_since"] > 0

    # Set at creation: the first line does not change it.
    env.receiver.hits.clear()
    await env.sim.customer_message(7, conversation_id, "one")
    await env.sim.customer_message(7, conversation_id, "two")
    assert env.receiver.names() == ["message_created", "message_created"]

    # A human reply: first reply, waiting_since cleared, in one update.
    env.receiver.hits.clear()
    await env.sim.agent_message(7, conversation_id, "hello", agent_id=24)
    assert env.receiver.names() == ["message_created", "conversation_updated"]
    update = env.receiver.hits[1].payload
    assert set(changed(update)) == {"waiting_since", "first_reply_created_at"}
    assert update["waiting_since"] == 0  # .to_i of nil
    assert update["id"] == conversation_id and update["status"] == "pending"  # top level
    assert "conversation" not in update  # the conversation itself, not a message (#13993)

    # The next customer line sets it again (after message_created).
    env.receiver.hits.clear()
    message = await env.sim.customer_message(7, conversation_id, "three")
    assert env.receiver.names() == ["message_created", "conversation_updated"]
    update = env.receiver.hits[1].payload
    assert changed(update)["waiting_since"] == {
        "previous_value": None,
        "current_value": int(message["received_at"]),
    }
    assert update["waiting_since"] == int(message["received_at"])
    # Not a takeover for the intake: the bot owns it (4.16), no status change.
    assert isinstance(classify(update), Ignored)

    # A private note changes nothing.
    env.receiver.hits.clear()
    await env.sim.agent_message(7, conversation_id, "note", private=True)
    assert env.receiver.names() == ["message_created"]  # private notes are sent (§3)


@pytest.mark.parametrize(("version", "clears"), [("4.16", True), ("4.13", False)])
async def test_bot_reply_clears_waiting_since_only_in_4_16(
    make_env: Factory, version: str, clears: bool
) -> None:
    env = await make_env(chatwoot_version=version)
    conversation_id = await env.sim.create_conversation(7)
    await env.sim.customer_message(7, conversation_id, "hi")
    env.receiver.hits.clear()
    async with env.client(BOT_TOKEN) as bot:
        await bot.send_message(7, conversation_id, "bot answer")
    await env.sim.flush()
    updates = env.receiver.events("conversation_updated")
    state = env.conversation(conversation_id)
    assert state["first_reply_created_at"] is None  # a bot reply is not a human response
    if clears:
        (update,) = updates
        assert set(changed(update.payload)) == {"waiting_since"}
        assert state["waiting_since"] == 0
    else:
        assert updates == [] and state["waiting_since"] > 0


async def test_priority_labels_custom_attributes_and_assignment_fire_updates(
    make_env: Factory,
) -> None:
    env = await make_env()
    conversation_id = await env.sim.create_conversation(7, status="open")
    env.receiver.hits.clear()
    base = f"/api/v1/accounts/7/conversations/{conversation_id}"
    async with httpx.AsyncClient(base_url=env.url, headers={"api_access_token": USER_TOKEN}) as h:
        assert (await h.post(base + "/toggle_priority", json={"priority": "urgent"})).is_success
        assert (await h.post(base + "/labels", json={"labels": ["vip"]})).is_success
        custom = await h.post(base + "/custom_attributes", json={"custom_attributes": {"a": 1}})
        assert custom.json() == {"custom_attributes": {"a": 1}}
        assert (await h.post(base + "/assignments", json={"assignee_id": 24})).is_success
        assert (await h.post(base + "/assignments", json={"team_id": 3})).is_success
        # Unchanged values fire nothing.
        assert (await h.post(base + "/labels", json={"labels": ["vip"]})).is_success
    await env.sim.flush()
    updates = [changed(h.payload) for h in env.receiver.events("conversation_updated")]
    assert [set(u) for u in updates] == [
        {"priority"},
        {"label_list"},
        {"custom_attributes"},
        {"assignee_id"},
        {"team_id"},
    ]
    assert updates[0]["priority"] == {"previous_value": None, "current_value": "urgent"}
    assert updates[3]["assignee_id"] == {"previous_value": None, "current_value": 24}
    last = env.receiver.events("conversation_updated")[-1].payload
    assert (last["priority"], last["labels"], last["custom_attributes"]) == (
        "urgent",
        ["vip"],
        {"a": 1},
    )


async def test_status_events_for_an_account_webhook(make_env: Factory) -> None:
    env = await make_env()
    conversation_id = await env.sim.create_conversation(7)
    env.receiver.hits.clear()
    await env.sim.set_status(7, conversation_id, "resolved")
    # conversation_opened/resolved are not account-webhook events (issue #4539).
    assert env.receiver.names() == ["conversation_status_changed", "conversation_updated"]
    status_changed = env.receiver.hits[0].payload
    assert status_changed["changed_attributes"] == [
        {"status": {"previous_value": "pending", "current_value": "resolved"}}
    ]  # only status
    assert set(changed(env.receiver.hits[1].payload)) == {"status", "waiting_since"}


@pytest.mark.parametrize(
    ("version", "to_open", "to_pending"),
    [
        ("4.10", ["conversation_opened"], []),
        (
            "4.13",
            ["conversation_opened", "conversation_status_changed", "conversation_updated"],
            ["conversation_status_changed", "conversation_updated"],
        ),
    ],
)
async def test_status_events_for_an_agent_bot(
    make_env: Factory, version: str, to_open: list[str], to_pending: list[str]
) -> None:
    env = await make_env(mode="agent_bot", chatwoot_version=version)
    conversation_id = await env.sim.create_conversation(7)
    assert env.receiver.hits == []  # no conversation_created for bots
    await env.sim.set_status(7, conversation_id, "open")
    assert env.receiver.names() == to_open
    env.receiver.hits.clear()
    await env.sim.set_status(7, conversation_id, "pending")
    assert env.receiver.names() == to_pending  # before #14002 bots never saw pending
    if to_pending:
        event = classify(env.receiver.hits[0].payload, default_account_id=7)
        assert event == ConversationStatusChanged(
            7, conversation_id, "pending", "open", "conversation_status_changed"
        )


async def test_bots_get_messages_of_any_status_and_no_typing(make_env: Factory) -> None:
    env = await make_env(mode="agent_bot")
    conversation_id = await env.sim.create_conversation(7, status="resolved")
    await env.sim.set_status(7, conversation_id, "snoozed")
    env.receiver.hits.clear()
    await env.sim.customer_message(7, conversation_id, "hi")  # reopens: snoozed -> open
    assert "message_created" in env.receiver.names()
    path = f"/api/v1/accounts/7/conversations/{conversation_id}/toggle_typing_status"
    async with httpx.AsyncClient(base_url=env.url) as http:
        response = await http.post(
            path, json={"typing_status": "on"}, headers={"api_access_token": USER_TOKEN}
        )
    assert response.status_code == 200
    await env.sim.flush()
    assert "conversation_typing_on" not in env.receiver.names()


async def test_a_bot_gets_conversations_assigned_to_it_outside_its_inbox(
    make_env: Factory,
) -> None:
    env = await make_env(mode="agent_bot", inbox_has_bot=False)
    conversation_id = await env.sim.create_conversation(7, status="open")
    await env.sim.customer_message(7, conversation_id, "nobody's bot")
    assert env.receiver.hits == []
    path = f"/api/v1/accounts/7/conversations/{conversation_id}/assignments"
    async with httpx.AsyncClient(base_url=env.url) as http:
        assigned = await http.post(
            path,
            json={"assignee_type": "AgentBot", "assignee_id": 4},
            headers={"api_access_token": USER_TOKEN},
        )
    assert assigned.json()["id"] == 4  # agent_bot_slim
    await env.sim.flush()
    env.receiver.hits.clear()
    await env.sim.customer_message(7, conversation_id, "now the bot's")
    assert "message_created" in env.receiver.names()


@pytest.mark.parametrize(("version", "has_account"), [("4.16", True), ("4.10", False)])
async def test_top_level_account_per_version(
    make_env: Factory, version: str, has_account: bool
) -> None:
    env = await make_env(chatwoot_version=version)
    conversation_id = await env.sim.create_conversation(7)
    await env.sim.customer_message(7, conversation_id, "hi")
    await env.sim.set_status(7, conversation_id, "open")
    created, message, status_changed, _ = (h.payload for h in env.receiver.hits)
    assert message["account"] == {"id": 7, "name": "Account 7"}  # message events: always
    assert ("account" in created) is has_account
    assert ("account" in status_changed) is has_account
    # Without it, consumers fall back to messages[0].account_id.
    assert status_changed["messages"][0]["account_id"] == 7
    assert classify(status_changed).key == f"7:{conversation_id}"  # type: ignore[union-attr]


async def test_subscriptions_filter_account_webhooks(make_env: Factory) -> None:
    env = await make_env(webhook_subscriptions=("message_created",))
    conversation_id = await env.sim.create_conversation(7)
    await env.sim.customer_message(7, conversation_id, "hi")
    await env.sim.set_status(7, conversation_id, "resolved")
    assert env.receiver.names() == ["message_created"]
    # conversation_created, and resolved/status_changed/updated: no job at all.
    assert env.sim.stats()["webhooks"]["filtered"] == 4
    with pytest.raises(ValueError, match="webhook_subscriptions"):
        await make_env(webhook_subscriptions=("conversation_opened",))


async def test_typing_events_reach_account_webhooks(make_env: Factory) -> None:
    env = await make_env()
    conversation_id = await env.sim.create_conversation(7)
    env.receiver.hits.clear()
    path = f"/api/v1/accounts/7/conversations/{conversation_id}/toggle_typing_status"
    async with httpx.AsyncClient(base_url=env.url) as http:
        on = await http.post(
            path, json={"typing_status": "on"}, headers={"api_access_token": BOT_TOKEN}
        )
        other = await http.post(
            path, json={"typing_status": "maybe"}, headers={"api_access_token": USER_TOKEN}
        )
    assert (on.status_code, on.content) == (200, b"")  # head :ok
    assert other.status_code == 200
    await env.sim.flush()
    (typing,) = env.receiver.hits
    payload = typing.payload
    assert payload["event"] == "conversation_typing_on"
    assert payload["user"]["type"] == "agent_bot"  # the bot's identity is kept (#13705)
    assert payload["conversation"]["id"] == conversation_id and payload["is_private"] is False


async def test_activity_messages_are_never_sent(make_env: Factory) -> None:
    env = await make_env(mode="agent_bot")
    conversation_id = await env.sim.create_conversation(7)
    env.receiver.script = [503]  # the failure handler writes an activity message
    await env.sim.customer_message(7, conversation_id, "hi")
    await env.sim.flush()
    assert env.sim.messages(7, conversation_id)[-1]["message_type"] == 2
    for hit in env.receiver.events("message_created"):
        assert hit.payload["message_type"] != "activity"
