"""`sluice chatwoot setup` against the Chatwoot simulator over real loopback HTTP: both modes
create what is missing, a second run reuses it, a dry run sends nothing, and every error
says what to do and exits 1 without printing the token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from sluice.chatwoot.admin import ChatwootRefusal
from sluice.chatwoot.setup import NEEDED_EVENTS, explain, receiver_url
from sluice.cli import app

from ..servers import free_port
from .chatwoot_sim import ADMIN_TOKEN, AGENT_TOKEN, BOT_TOKEN, SimThread

PUBLIC = "https://sluice.example.com"
RECEIVER = "https://sluice.example.com/webhooks/chatwoot"
BOTS = "/api/v1/accounts/{account_id}/agent_bots"
LINK = "/api/v1/accounts/{account_id}/inboxes/{inbox_id}/set_agent_bot"
WEBHOOKS = "/api/v1/accounts/{account_id}/webhooks"


@pytest.fixture
def sim() -> Iterator[SimThread]:
    thread = SimThread()
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


def setup(sim: SimThread, *args: str, token: str = ADMIN_TOKEN, url: str | None = None) -> Result:
    env: dict[str, str | None] = {
        "CHATWOOT_URL": url or sim.url,
        "CHATWOOT_API_TOKEN": token,
        "CHATWOOT_ACCOUNT_ID": "7",
        "COLUMNS": "200",
    }
    result = CliRunner().invoke(app, ["chatwoot", "setup", *args], env=env)
    assert token not in result.output  # the token is never printed
    return result


def state(sim: SimThread) -> Any:
    assert sim.sim is not None
    return sim.sim.app.state.chatwoot_setup


def bots_at(sim: SimThread, url: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{sim.url}/api/v1/accounts/7/agent_bots", headers={"api_access_token": ADMIN_TOKEN}
    )
    response.raise_for_status()
    return [b for b in response.json() if b["outgoing_url"] == url]


# --- agent bot ---------------------------------------------------------------------------------


def test_agent_bot_is_created_linked_then_reused(sim: SimThread) -> None:
    first = setup(sim, "--mode", "agent-bot", "--public-url", PUBLIC, "--inbox", "1")
    assert first.exit_code == 0, first.output
    assert sim.routes("POST") == [f"POST {BOTS}", f"POST {LINK}"]
    [bot] = bots_at(sim, RECEIVER)
    assert bot["name"] == "Sluice"
    assert state(sim).links == {1: bot["id"]}
    assert f"created agent bot {bot['id']} (Sluice)" in first.output
    assert "replacing agent bot 4 (Sluice Bot)" in first.output  # the inbox's previous bot
    # The secret travels in the bot's JSON for administrators (4.13+): printed to copy.
    assert f"CHATWOOT_WEBHOOK_SECRET={bot['secret']}" in first.output
    assert f"CHATWOOT_AGENT_BOT_ID={bot['id']}" in first.output
    assert bot["access_token"] not in first.output  # only where to find it
    assert "access token is in its JSON" in first.output

    sim.clear()
    second = setup(sim, "--mode", "agent-bot", "--public-url", PUBLIC + "/", "--inbox", "1")
    assert second.exit_code == 0, second.output
    assert sim.routes("POST") == []  # nothing created or linked again
    assert len(bots_at(sim, RECEIVER)) == 1
    assert f"reusing agent bot {bot['id']} (Sluice)" in second.output
    assert "inbox 1 (Website Chat) already has this bot" in second.output


def test_agent_bot_without_inbox_warns_and_lists_inboxes(sim: SimThread) -> None:
    result = setup(sim, "--mode", "agent-bot", "--public-url", RECEIVER)
    assert result.exit_code == 0, result.output
    assert "no --inbox given" in result.output
    assert "inboxes: 1 (Website Chat)" in result.output
    assert sim.routes("POST") == [f"POST {BOTS}"]


def test_agent_bot_on_a_chatwoot_that_does_not_sign_bots() -> None:
    old = SimThread(chatwoot_version="4.12")
    old.start()
    try:
        result = setup(old, "--mode", "agent-bot", "--public-url", PUBLIC, "--inbox", "1")
    finally:
        old.stop()
    assert result.exit_code == 0, result.output
    assert "version 4.12.0" in result.output
    assert "CHATWOOT_WEBHOOK_SECRET=" not in result.output
    assert "leave CHATWOOT_WEBHOOK_SECRET unset: Chatwoot 4.12.0 does not sign" in result.output


# --- account webhook ---------------------------------------------------------------------------


def test_account_webhook_is_created_then_reused(sim: SimThread) -> None:
    first = setup(sim, "--mode", "account-webhook", "--public-url", PUBLIC)
    assert first.exit_code == 0, first.output
    assert sim.routes("POST") == [f"POST {WEBHOOKS}"]
    [created] = [c for c in sim.calls if c.method == "POST"]
    assert created.body == {
        "webhook": {"url": RECEIVER, "subscriptions": list(NEEDED_EVENTS), "name": "Sluice"}
    }
    [webhook] = [w for w in state(sim).webhooks.values() if w["url"] == RECEIVER]
    assert f"CHATWOOT_WEBHOOK_SECRET={webhook['secret']}" in first.output
    assert "sent once and never retried" in first.output
    # The inbox has an agent bot (the simulator's default): open means a human has it.
    assert "leave CHATWOOT_ANSWER_OPEN unset" in first.output

    sim.clear()
    second = setup(sim, "--mode", "account-webhook", "--public-url", PUBLIC)
    assert second.exit_code == 0, second.output
    assert [c.method for c in sim.calls if c.method != "GET"] == []
    assert f"reusing account webhook {webhook['id']}" in second.output
    assert len([w for w in state(sim).webhooks.values() if w["url"] == RECEIVER]) == 1


SOME_EVENTS = ["message_created", "contact_created"]


def test_existing_webhook_gets_the_missing_events(sim: SimThread) -> None:
    response = httpx.post(
        f"{sim.url}/api/v1/accounts/7/webhooks",
        headers={"api_access_token": ADMIN_TOKEN},
        json={"webhook": {"url": RECEIVER, "subscriptions": SOME_EVENTS}},
    )
    response.raise_for_status()
    sim.clear()
    result = setup(sim, "--mode", "account-webhook", "--public-url", PUBLIC)
    assert result.exit_code == 0, result.output
    assert [c.method for c in sim.calls if c.method != "GET"] == ["PATCH"]
    [webhook] = state(sim).webhooks.values()
    assert set(webhook["subscriptions"]) == {"contact_created", *NEEDED_EVENTS}
    assert "subscribed it to message_updated, conversation_created" in result.output


def test_inbox_without_bot_gets_answer_open() -> None:
    plain = SimThread(inbox_has_bot=False)
    plain.start()
    try:
        result = setup(plain, "--mode", "account-webhook", "--public-url", PUBLIC)
    finally:
        plain.stop()
    assert result.exit_code == 0, result.output
    assert "CHATWOOT_ANSWER_OPEN=true" in result.output


# --- dry run -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("agent-bot", "POST /api/v1/accounts/7/inboxes/1/set_agent_bot"),
        ("account-webhook", "POST /api/v1/accounts/7/webhooks"),
    ],
)
def test_dry_run_sends_nothing(sim: SimThread, mode: str, expected: str) -> None:
    result = setup(sim, "--mode", mode, "--public-url", PUBLIC, "--inbox", "1", "--dry-run")
    assert result.exit_code == 0, result.output
    assert sim.calls == []  # not even GET /api
    assert "Dry run: nothing is sent." in result.output
    assert expected in result.output
    assert RECEIVER in result.output
    assert "api_access_token: ***" in result.output


def test_dry_run_needs_no_token(sim: SimThread) -> None:
    result = CliRunner().invoke(
        app,
        ["chatwoot", "setup", "--mode", "agent-bot", "--public-url", PUBLIC, "--dry-run"],
        env={"CHATWOOT_URL": sim.url, "CHATWOOT_API_TOKEN": None, "CHATWOOT_ACCOUNT_ID": None},
    )
    assert result.exit_code == 0, result.output
    assert "/api/v1/accounts/{account_id}/agent_bots" in result.output
    assert sim.calls == []


def test_private_public_url_warns_from_4_14() -> None:
    for version, warned in (("4.13", False), ("4.14", True)):
        thread = SimThread(chatwoot_version=version)
        thread.start()
        try:
            result = setup(
                thread, "--mode", "account-webhook", "--public-url", "http://127.0.0.1:8000"
            )
        finally:
            thread.stop()
        assert result.exit_code == 0, result.output
        assert ("SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true" in result.output) is warned, version


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "args", "expected"),
    [
        ("not-a-token", (), "Chatwoot refused the token (401: Invalid Access Token)"),
        (BOT_TOKEN, (), "the token is an agent bot's"),
        (AGENT_TOKEN, (), "is 'agent' in account 7: creating agent bots and webhooks needs an"),
        (ADMIN_TOKEN, ("--account-id", "99"), "not a member of account 99; its accounts: 7"),
        (ADMIN_TOKEN, ("--inbox", "9"), "no inbox 9 in account 7; its inboxes: 1 (Website Chat)"),
    ],
    ids=["wrong-token", "bot-token", "agent-role", "unknown-account", "unknown-inbox"],
)
def test_errors_say_what_to_do(
    sim: SimThread, token: str, args: tuple[str, ...], expected: str
) -> None:
    result = setup(sim, "--mode", "agent-bot", "--public-url", PUBLIC, *args, token=token)
    assert result.exit_code == 1, result.output
    assert expected in " ".join(result.output.split())
    assert "what to do:" in result.output
    assert sim.routes("POST") == []  # nothing half-done


def test_unreachable_chatwoot(sim: SimThread) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = setup(sim, "--mode", "account-webhook", "--public-url", PUBLIC, url=url)
    assert result.exit_code == 1, result.output
    assert "cannot reach Chatwoot" in result.output
    assert "CHATWOOT_URL" in result.output


def test_url_that_is_not_chatwoots_base(sim: SimThread) -> None:
    result = setup(sim, "--mode", "account-webhook", "--public-url", PUBLIC, url=sim.url + "/app")
    assert result.exit_code == 1, result.output
    assert "version is unknown" in result.output
    assert "must be Chatwoot's base URL" in " ".join(result.output.split())


def test_bad_public_url_and_missing_chatwoot_url(sim: SimThread) -> None:
    bad = setup(sim, "--mode", "agent-bot", "--public-url", "sluice.example.com")
    assert bad.exit_code == 1
    assert "is not an http(s) URL" in bad.output
    missing = CliRunner().invoke(
        app,
        ["chatwoot", "setup", "--mode", "agent-bot", "--public-url", PUBLIC],
        env={"CHATWOOT_URL": None},
    )
    assert missing.exit_code == 2
    assert "CHATWOOT_URL" in missing.output


def test_a_404_from_an_account_route_names_the_account() -> None:
    """Chatwoot answers 404 to an unknown account (Account.find): the error says which and
    where the id comes from."""
    error = explain(
        ChatwootRefusal(404, "not found", False, detail="Resource could not be found"),
        account_id=42,
        action="list webhooks",
    )
    assert "account 42 does not exist" in error.problem
    assert "CHATWOOT_ACCOUNT_ID" in error.fix


def test_receiver_url() -> None:
    assert (
        receiver_url("https://Sluice.example.com/")
        == "https://Sluice.example.com/webhooks/chatwoot"
    )
    assert receiver_url("https://x.example/base/webhooks/chatwoot/") == (
        "https://x.example/base/webhooks/chatwoot"
    )
    assert (
        receiver_url("http://10.0.0.5:8000/proxy") == "http://10.0.0.5:8000/proxy/webhooks/chatwoot"
    )


# --- the simulator's setup routes (what the command relies on) ----------------------------------


def test_simulator_setup_routes_follow_chatwoot(sim: SimThread) -> None:
    def call(method: str, path: str, token: str | None = ADMIN_TOKEN, **kw: Any) -> httpx.Response:
        headers = {"api_access_token": token} if token else {}
        return httpx.request(method, sim.url + path, headers=headers, **kw)

    version = call("GET", "/api", token=None)
    assert version.status_code == 200 and version.json()["version"] == "4.16.0"
    # Bots may not read the profile; agents may not manage bots or webhooks (Pundit: 401).
    assert call("GET", "/api/v1/profile", BOT_TOKEN).json() == {
        "error": "Access to this endpoint is not authorized for bots"
    }
    refused = call("GET", "/api/v1/accounts/7/webhooks", AGENT_TOKEN)
    assert refused.status_code == 401
    assert refused.json() == {"error": "You are not authorized to do this action"}
    assert call("GET", "/api/v1/accounts/99/webhooks").status_code == 404
    # Webhook validations: 422 in Rails' format.
    hooks = "/api/v1/accounts/7/webhooks"
    assert call("POST", hooks, json={}).json() == {
        "error": "param is missing or the value is empty: webhook"
    }
    bad_events = call("POST", hooks, json={"webhook": {"url": RECEIVER, "subscriptions": ["x"]}})
    assert bad_events.status_code == 422
    assert bad_events.json()["message"] == "Subscriptions Invalid events"
    good = {"webhook": {"url": RECEIVER, "subscriptions": ["message_created"]}}
    assert call("POST", hooks, json=good).status_code == 200
    taken = call("POST", hooks, json=good)
    assert taken.status_code == 422 and taken.json()["message"] == "Url has already been taken"
    bad_url = {"webhook": {"url": "ftp://x", "subscriptions": ["message_created"]}}
    assert call("POST", hooks, json=bad_url).json()["message"] == "Url is invalid"
    # set_agent_bot: an unknown bot is 404, null unlinks, the answer is an empty 200.
    link = "/api/v1/accounts/7/inboxes/1/set_agent_bot"
    assert call("POST", link, json={"agent_bot": 999}).status_code == 404
    unlinked = call("POST", link, json={"agent_bot": None})
    assert unlinked.status_code == 200 and unlinked.content == b""
    assert call("GET", "/api/v1/accounts/7/inboxes/1/agent_bot").json() == {"agent_bot": {}}
