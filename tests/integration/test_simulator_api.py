"""The REST API as real Chatwoot answers it, per version and token (docs/simulator.md, rules
4, 5, 6, 7 and 10): toggle_status with agent, administrator and bot tokens; assignments and
their 4.16 side effects; the bot allow-list of each version; message create; typing; agents
and their availability; plus the version profiles and the CLI option."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from sluice.cli import app as cli_app
from sluice.simulator import LATEST_VERSION, SimulatorConfig, profile_for

from .test_simulator_harness import (
    ADMIN_ID,
    AGENT_ID,
    AGENT_TOKEN,
    BOT_ID,
    BOT_TOKEN,
    USER_TOKEN,
    Env,
    Factory,
    simulators,
)


@pytest.fixture
async def make_env() -> AsyncIterator[Factory]:
    async with simulators() as make:
        yield make


async def call(
    env: Env, method: str, path: str, token: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=env.url) as http:
        return await http.request(
            method, f"/api/v1/accounts/7{path}", json=body, headers={"api_access_token": token}
        )


def conv(conversation_id: int, suffix: str = "") -> str:
    return f"/conversations/{conversation_id}{suffix}"


# --- rule 4: toggle_status ------------------------------------------------------------------


async def test_agent_token_opening_overwrites_the_assignee(make_env: Factory) -> None:
    env = await make_env()
    conversation_id = await env.sim.create_conversation(7)
    await call(env, "POST", conv(conversation_id, "/assignments"), USER_TOKEN, {"assignee_id": 23})
    response = await call(
        env, "POST", conv(conversation_id, "/toggle_status"), AGENT_TOKEN, {"status": "open"}
    )
    assert response.json()["payload"]["success"] is True
    state = env.conversation(conversation_id)
    assert state["status"] == "open"
    assert (state["meta"]["assignee"]["id"], state["meta"]["assignee_type"]) == (AGENT_ID, "User")
    # Also open -> open: every toggle ending open with an agent's token.
    await call(env, "POST", conv(conversation_id, "/assignments"), USER_TOKEN, {"assignee_id": 23})
    await call(
        env, "POST", conv(conversation_id, "/toggle_status"), AGENT_TOKEN, {"status": "open"}
    )
    assert env.conversation(conversation_id)["meta"]["assignee"]["id"] == AGENT_ID


async def test_administrator_opening_is_not_self_assigned(make_env: Factory) -> None:
    env = await make_env()
    conversation_id = await env.sim.create_conversation(7)  # 4.16: owned by the bot
    await call(env, "POST", conv(conversation_id, "/toggle_status"), USER_TOKEN, {"status": "open"})
    state = env.conversation(conversation_id)
    # handle_human_open releases the bot; an administrator is not made the assignee.
    assert (state["status"], state["meta"]["assignee"]) == ("open", None)


async def test_user_agent_api_token_kind(make_env: Factory) -> None:
    env = await make_env(api_token_kind="user_agent", user_tokens={})
    conversation_id = await env.sim.create_conversation(7)
    await call(env, "POST", conv(conversation_id, "/toggle_status"), USER_TOKEN, {"status": "open"})
    assert env.conversation(conversation_id)["meta"]["assignee"]["id"] == AGENT_ID


async def test_bot_handoff(make_env: Factory) -> None:
    env = await make_env()
    conversation_id = await env.sim.create_conversation(7)
    await env.sim.customer_message(7, conversation_id, "a human please")
    async with env.client(BOT_TOKEN) as bot:
        await bot.send_message(7, conversation_id, "handing over")  # 4.16: clears waiting
    assert env.conversation(conversation_id)["waiting_since"] == 0
    await env.sim.flush()
    env.receiver.hits.clear()
    response = await call(
        env, "POST", conv(conversation_id, "/toggle_status"), BOT_TOKEN, {"status": "open"}
    )
    payload = response.json()["payload"]
    assert payload["success"] is None and payload["current_status"] == "open"
    state = env.conversation(conversation_id)
    assert state["meta"]["assignee"] is None  # the bot owner is cleared (#14875)
    assert state["waiting_since"] > 0  # bot_handoff! sets it when blank
    await env.sim.flush()
    # No webhook of its own: what open! emits.
    assert env.receiver.names() == ["conversation_status_changed", "conversation_updated"]


async def test_bot_toggle_that_is_not_a_handoff(make_env: Factory) -> None:
    env = await make_env()
    conversation_id = await env.sim.create_conversation(7, status="open")
    response = await call(
        env, "POST", conv(conversation_id, "/toggle_status"), BOT_TOKEN, {"status": "resolved"}
    )
    assert response.json()["payload"]["success"] is True
    toggled = await call(env, "POST", conv(conversation_id, "/toggle_status"), BOT_TOKEN, {})
    assert toggled.json()["payload"]["current_status"] == "open"  # no status: toggles


# --- rule 5: assignments ------------------------------------------------------------------


async def test_assignee_wins_over_team(make_env: Factory) -> None:
    env = await make_env()
    conversation_id = await env.sim.create_conversation(7, status="open")
    response = await call(
        env,
        "POST",
        conv(conversation_id, "/assignments"),
        USER_TOKEN,
        {"assignee_id": AGENT_ID, "team_id": 3},
    )
    assert response.json()["id"] == AGENT_ID and response.json()["role"] == "agent"
    state = env.conversation(conversation_id)
    assert state["meta"]["team"] is None and state["meta"]["assignee"]["id"] == AGENT_ID
    unknown = await call(
        env, "POST", conv(conversation_id, "/assignments"), USER_TOKEN, {"assignee_id": 999}
    )
    assert unknown.json() is None and env.conversation(conversation_id)["meta"]["assignee"] is None
    empty = await call(env, "POST", conv(conversation_id, "/assignments"), USER_TOKEN, {})
    assert empty.json() is None


async def test_4_16_assignment_side_effects(make_env: Factory) -> None:
    env = await make_env()
    conversation_id = await env.sim.create_conversation(7)
    state = env.conversation(conversation_id)
    # PR #14875: a new conversation in a bot inbox is pending and owned by the bot.
    assert (state["status"], state["meta"]["assignee_type"]) == ("pending", "AgentBot")
    assert state["meta"]["assignee"]["id"] == BOT_ID

    env.receiver.hits.clear()
    await call(
        env, "POST", conv(conversation_id, "/assignments"), BOT_TOKEN, {"assignee_id": ADMIN_ID}
    )
    state = env.conversation(conversation_id)
    # PR #14870: a human taking a bot-owned pending conversation opens it.
    assert (state["status"], state["meta"]["assignee_type"]) == ("open", "User")
    await env.sim.flush()
    assert env.receiver.names() == ["conversation_status_changed", "conversation_updated"]

    bot = await call(
        env,
        "POST",
        conv(conversation_id, "/assignments"),
        USER_TOKEN,
        {"assignee_type": "AgentBot", "assignee_id": BOT_ID},
    )
    assert bot.json()["id"] == BOT_ID and bot.json()["bot_type"] == "webhook"
    state = env.conversation(conversation_id)
    # Assigning an AgentBot clears the human and sets pending.
    assert (state["status"], state["meta"]["assignee_type"]) == ("pending", "AgentBot")

    # Ordinary human (un)assignment keeps the status.
    other = await env.sim.create_conversation(7, status="open")
    await call(env, "POST", conv(other, "/assignments"), USER_TOKEN, {"assignee_id": AGENT_ID})
    await call(env, "POST", conv(other, "/assignments"), USER_TOKEN, {"assignee_id": None})
    assert env.conversation(other)["status"] == "open"


async def test_inbox_without_a_bot_starts_open_and_unowned(make_env: Factory) -> None:
    env = await make_env(inbox_has_bot=False)
    state = env.conversation(await env.sim.create_conversation(7))
    assert (state["status"], state["meta"]["assignee"]) == ("open", None)


async def test_before_4_16_assignment_never_changes_the_status(make_env: Factory) -> None:
    env = await make_env(chatwoot_version="4.15")
    conversation_id = await env.sim.create_conversation(7)
    assert env.conversation(conversation_id)["meta"]["assignee"] is None  # not bot-owned
    await call(
        env, "POST", conv(conversation_id, "/assignments"), USER_TOKEN, {"assignee_id": AGENT_ID}
    )
    assert env.conversation(conversation_id)["status"] == "pending"
    await call(
        env,
        "POST",
        conv(conversation_id, "/assignments"),
        USER_TOKEN,
        {"assignee_type": "AgentBot", "assignee_id": BOT_ID},
    )
    state = env.conversation(conversation_id)
    assert (state["status"], state["meta"]["assignee_type"]) == ("pending", "AgentBot")


# --- rule 6: the bot allow-list per version -------------------------------------------------


@pytest.mark.parametrize(
    ("version", "read", "typing"),
    [("4.10", False, False), ("4.12", False, True), ("4.15", True, True), ("4.16", True, True)],
)
async def test_bot_allow_list(make_env: Factory, version: str, read: bool, typing: bool) -> None:
    env = await make_env(chatwoot_version=version)
    conversation_id = await env.sim.create_conversation(7)
    statuses = {
        "show": (await call(env, "GET", conv(conversation_id), BOT_TOKEN)).status_code,
        "labels": (await call(env, "GET", conv(conversation_id, "/labels"), BOT_TOKEN)).status_code,
        "label": (
            await call(env, "POST", conv(conversation_id, "/labels"), BOT_TOKEN, {"labels": []})
        ).status_code,
        "typing": (
            await call(
                env,
                "POST",
                conv(conversation_id, "/toggle_typing_status"),
                BOT_TOKEN,
                {"typing_status": "off"},
            )
        ).status_code,
    }
    assert statuses == {
        "show": 200 if read else 401,
        "labels": 200 if read else 401,
        "label": 200 if read else 401,
        "typing": 200 if typing else 401,
    }
    listing = await call(env, "GET", conv(conversation_id, "/messages"), BOT_TOKEN)
    agents = await call(env, "GET", "/agents", BOT_TOKEN)
    for refused in (listing, agents):  # in no version
        assert refused.status_code == 401
        assert refused.json() == {"error": "Access to this endpoint is not authorized for bots"}
    # Always allowed: messages create, toggle_status, assignments, priority, custom attributes.
    allowed = [
        await call(env, "POST", conv(conversation_id, "/messages"), BOT_TOKEN, {"content": "x"}),
        await call(env, "POST", conv(conversation_id, "/toggle_status"), BOT_TOKEN, {}),
        await call(env, "POST", conv(conversation_id, "/assignments"), BOT_TOKEN, {}),
        await call(
            env, "POST", conv(conversation_id, "/toggle_priority"), BOT_TOKEN, {"priority": "low"}
        ),
        await call(
            env,
            "POST",
            conv(conversation_id, "/custom_attributes"),
            BOT_TOKEN,
            {"custom_attributes": {}},
        ),
    ]
    assert [r.status_code for r in allowed] == [200] * 5


# --- rule 7: message create ------------------------------------------------------------------


async def test_user_token_posting_as_the_bot(make_env: Factory) -> None:
    env = await make_env()
    conversation_id = await env.sim.create_conversation(7)
    await env.sim.customer_message(7, conversation_id, "hi")
    env.receiver.hits.clear()
    body = {
        "content": "as the bot",
        "sender_type": "AgentBot",
        "sender_id": BOT_ID,
        "content_attributes": {"sluice_reply_id": "r-1", "nested": {"a": [1, {"b": None}]}},
    }
    response = await call(env, "POST", conv(conversation_id, "/messages"), USER_TOKEN, body)
    sent = response.json()
    assert (sent["sender_type"], sent["sender"]["type"]) == ("AgentBot", "agent_bot")
    assert sent["message_type"] == 1 and isinstance(sent["created_at"], int)
    assert sent["content_attributes"] == body["content_attributes"]  # kept whole
    await env.sim.flush()
    echo = env.receiver.events("message_created")[0].payload
    assert echo["sender"]["type"] == "agent_bot"
    assert echo["content_attributes"] == body["content_attributes"]
    # Not a human response: no first reply.
    assert env.conversation(conversation_id)["first_reply_created_at"] is None

    human = await call(
        env, "POST", conv(conversation_id, "/messages"), USER_TOKEN, {"content": "me"}
    )
    assert human.json()["sender"]["type"] == "user"
    assert env.conversation(conversation_id)["first_reply_created_at"] is not None
    # Another bot id is not ours: the caller stays the sender.
    other = await call(
        env,
        "POST",
        conv(conversation_id, "/messages"),
        USER_TOKEN,
        {"content": "x", "sender_type": "AgentBot", "sender_id": 99},
    )
    assert other.json()["sender"]["type"] == "user"


async def test_message_create_inputs(make_env: Factory) -> None:
    env = await make_env()
    conversation_id = await env.sim.create_conversation(7)
    as_string = await call(
        env,
        "POST",
        conv(conversation_id, "/messages"),
        USER_TOKEN,
        {"content": "x", "content_attributes": '{"external_id": "abc"}', "echo_id": "e-1"},
    )
    assert as_string.json()["content_attributes"] == {"external_id": "abc"}
    assert as_string.json()["echo_id"] == "e-1"
    incoming = await call(
        env,
        "POST",
        conv(conversation_id, "/messages"),
        USER_TOKEN,
        {"content": "x", "message_type": "incoming"},
    )
    assert incoming.status_code == 422
    assert "only allowed in Api inboxes" in incoming.json()["message"]


# --- rule 10: agents and availability ---------------------------------------------------------


async def test_agents_and_availability(make_env: Factory) -> None:
    env = await make_env()
    env.sim.set_agent_availability(AGENT_ID, "busy")
    env.sim.set_agent_availability(ADMIN_ID, "online", connected=False)
    agents = (await call(env, "GET", "/agents", USER_TOKEN)).json()
    status = {a["id"]: a["availability_status"] for a in agents}
    assert status == {ADMIN_ID: "offline", AGENT_ID: "busy"}  # no live session: offline
    assert {a["id"]: a["role"] for a in agents} == {ADMIN_ID: "administrator", AGENT_ID: "agent"}

    async with httpx.AsyncClient(base_url=env.url) as http:
        set_online = await http.post(
            f"/_sim/agents/{ADMIN_ID}/availability",
            json={"connected": True},
            headers={"api_access_token": USER_TOKEN},
        )
    assert set_online.json()["availability_status"] == "online"
    with pytest.raises(ValueError):
        env.sim.set_agent_availability(AGENT_ID, "away")


# --- profiles, configuration and the command line --------------------------------------------


def test_profiles_and_config() -> None:
    assert profile_for("latest") == profile_for(LATEST_VERSION) == profile_for("4.16")
    with pytest.raises(ValueError, match="unknown Chatwoot version"):
        SimulatorConfig(chatwoot_version="3.9")
    assert SimulatorConfig().mode == "account_webhook"
    assert SimulatorConfig(webhook_kind="agent_bot").mode == "agent_bot"
    assert SimulatorConfig(mode="agent_bot").webhook_kind == "agent_bot"
    with pytest.warns(DeprecationWarning, match="webhook_attempts"):
        SimulatorConfig(webhook_attempts=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SimulatorConfig()
    with pytest.raises(ValueError, match="user_tokens"):
        SimulatorConfig(user_tokens={"t": 99})


def test_cli_rejects_an_unknown_chatwoot_version() -> None:
    result = CliRunner().invoke(cli_app, ["simulate", "--chatwoot-version", "3.9"])
    assert result.exit_code == 2
    assert "unknown Chatwoot version" in result.output
