"""`sluice validate`'s Chatwoot checks against the simulator over real loopback HTTP: with a
user token, a bot token and a wrong one; receivers, signing and version rules; `--json`
keeps working and neither the token nor the secret is ever printed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from sluice.chatwoot.checks import Receiver, check_chatwoot, signing_check, version_check
from sluice.cli import app
from sluice.settings.check import Check
from sluice.settings.config import load_settings

from ..servers import free_port
from .chatwoot_sim import ADMIN_TOKEN, AGENT_TOKEN, BOT_TOKEN, SECRET, SimThread

RECEIVER = "https://sluice.example.com/webhooks/chatwoot"


@pytest.fixture
def served() -> Iterator[list[SimThread]]:
    threads: list[SimThread] = []
    yield threads
    for thread in threads:
        thread.stop()


def serve(served: list[SimThread], **config: Any) -> SimThread:
    thread = SimThread(**config)
    thread.start()
    served.append(thread)
    return thread


def chatwoot_env(sim: SimThread, token: str | None, **extra: str) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "CHATWOOT_URL": sim.url,
        "CHATWOOT_API_TOKEN": token,
        "CHATWOOT_WEBHOOK_SECRET": None,
        "CHATWOOT_ACCOUNT_ID": None,
        "CHATWOOT_AGENT_BOT_ID": None,
        "SLUICE_BROKERS": None,
        "SLUICE_BROKERS_FILE": None,
    }
    env.update(extra)
    return env


def validate(redis_url: str, env: dict[str, str | None]) -> tuple[int, dict[str, Check]]:
    result = CliRunner().invoke(app, ["validate", "--json"], env={"REDIS_URL": redis_url, **env})
    for secret in (ADMIN_TOKEN, AGENT_TOKEN, BOT_TOKEN, SECRET):
        assert secret not in result.output
    report = json.loads(result.stdout)
    checks = {c["name"]: Check(**c) for c in report["checks"] if c["name"].startswith("chatwoot")}
    return result.exit_code, checks


async def direct(sim: SimThread, token: str | None, **extra: str) -> dict[str, Check]:
    """check_chatwoot without the Redis checks (``sluice validate`` runs both)."""
    env = {k: v for k, v in chatwoot_env(sim, token, **extra).items() if v is not None}
    checks = await check_chatwoot(load_settings(env))
    return {c.name: c for c in checks}


def outcomes(checks: dict[str, Check]) -> dict[str, str]:
    return {name: c.outcome for name, c in checks.items()}


# --- through `sluice validate --json` ----------------------------------------------------------


def test_user_token_and_a_complete_account_webhook(redis_url: str, served: list[SimThread]) -> None:
    sim = serve(served, webhook_url=RECEIVER, webhook_secret=SECRET)
    code, checks = validate(
        redis_url, chatwoot_env(sim, ADMIN_TOKEN, CHATWOOT_WEBHOOK_SECRET=SECRET)
    )
    assert code == 0, checks
    assert outcomes(checks) == {
        "chatwoot url": "pass",
        "chatwoot reachable": "pass",
        "chatwoot version": "pass",
        "chatwoot token": "pass",
        "chatwoot account": "pass",
        "chatwoot webhook": "pass",
        "chatwoot signing": "pass",
    }
    assert checks["chatwoot version"].detail.startswith("4.16.0")
    assert "administrator of account 7" in checks["chatwoot token"].detail
    assert "account webhook 1" in checks["chatwoot signing"].detail


def test_human_brokers_must_be_agents_of_the_account(
    redis_url: str, served: list[SimThread]
) -> None:
    sim = serve(served, webhook_url=RECEIVER)
    brokers = [
        {"name": "bot", "kind": "ai"},
        {"name": "tomas", "kind": "human", "agent_id": 23},
        {"name": "ghost", "kind": "human", "agent_id": 99},
    ]
    env = chatwoot_env(sim, ADMIN_TOKEN, SLUICE_BROKERS=json.dumps(brokers))
    code, checks = validate(redis_url, env)
    assert code == 1
    assert checks["chatwoot agents"].outcome == "fail"
    assert "ghost (agent_id 99)" in checks["chatwoot agents"].detail
    assert "tomas" not in checks["chatwoot agents"].detail

    brokers.pop()
    env["SLUICE_BROKERS"] = json.dumps(brokers)
    _, checks = validate(redis_url, env)
    assert checks["chatwoot agents"].outcome == "pass"
    assert "tomas = Tomás Reyes" in checks["chatwoot agents"].detail


def test_bot_token(redis_url: str, served: list[SimThread]) -> None:
    sim = serve(served)
    code, checks = validate(redis_url, chatwoot_env(sim, BOT_TOKEN, CHATWOOT_ACCOUNT_ID="7"))
    assert code == 0, checks  # warnings only: a bot token works for replies
    assert checks["chatwoot token"].outcome == "warn"
    assert "agent bot's token" in checks["chatwoot token"].detail
    assert "may not list messages" in checks["chatwoot token"].detail
    # A bot may read conversations (4.15+): the probe reaches the account; Chatwoot's 404 for
    # the probe's conversation cannot be told from a missing account's.
    assert checks["chatwoot account"].outcome == "warn"
    assert "chatwoot webhook" not in checks  # receivers are not visible to a bot


def test_wrong_token(redis_url: str, served: list[SimThread]) -> None:
    sim = serve(served)
    code, checks = validate(redis_url, chatwoot_env(sim, "wrong-token"))
    assert code == 1
    assert checks["chatwoot token"].outcome == "fail"
    assert "Invalid Access Token" in checks["chatwoot token"].detail
    assert "chatwoot account" not in checks


def test_unreachable_chatwoot(redis_url: str) -> None:
    env = {"CHATWOOT_URL": f"http://127.0.0.1:{free_port()}", "CHATWOOT_API_TOKEN": ADMIN_TOKEN}
    code, checks = validate(redis_url, env)
    assert code == 1
    assert checks["chatwoot reachable"].outcome == "fail"
    assert "chatwoot token" not in checks  # nothing more to learn


# --- the checks themselves (check_chatwoot, no Redis) ------------------------------------------


async def test_agent_token_warns_and_cannot_see_receivers(served: list[SimThread]) -> None:
    checks = await direct(serve(served), AGENT_TOKEN)
    assert checks["chatwoot token"].outcome == "warn"
    assert "agent in account 7" in checks["chatwoot token"].detail
    assert checks["chatwoot receiver"].outcome == "warn"
    assert "administrator" in checks["chatwoot receiver"].detail


async def test_agent_bot_linked_and_signing(served: list[SimThread]) -> None:
    sim = serve(served, mode="agent_bot", webhook_url=RECEIVER, webhook_secret=SECRET)
    checks = await direct(sim, ADMIN_TOKEN, CHATWOOT_WEBHOOK_SECRET=SECRET)
    assert checks["chatwoot agent bot"].outcome == "pass"
    assert "linked to inbox 1 (Website Chat)" in checks["chatwoot agent bot"].detail
    assert checks["chatwoot signing"].outcome == "pass"

    wrong = await direct(sim, ADMIN_TOKEN, CHATWOOT_WEBHOOK_SECRET="not-the-secret")
    assert wrong["chatwoot signing"].outcome == "fail"
    assert "refuses every delivery with 401" in wrong["chatwoot signing"].detail


async def test_bot_linked_to_no_inbox_fails(served: list[SimThread]) -> None:
    sim = serve(served, mode="agent_bot", webhook_url=RECEIVER, inbox_has_bot=False)
    checks = await direct(sim, ADMIN_TOKEN)
    assert checks["chatwoot agent bot"].outcome == "fail"
    assert "linked to no inbox" in checks["chatwoot agent bot"].detail


async def test_nothing_delivers_to_sluice(served: list[SimThread]) -> None:
    checks = await direct(serve(served), ADMIN_TOKEN)
    assert checks["chatwoot receiver"].outcome == "fail"
    assert "sluice chatwoot setup" in checks["chatwoot receiver"].detail


@pytest.mark.parametrize(
    ("subscriptions", "outcome"),
    [
        (("message_created",), "warn"),
        (("conversation_created", "conversation_updated"), "fail"),
    ],
)
async def test_webhook_missing_events(
    served: list[SimThread], subscriptions: tuple[str, ...], outcome: str
) -> None:
    sim = serve(served, webhook_url=RECEIVER, webhook_subscriptions=subscriptions)
    checks = await direct(sim, ADMIN_TOKEN)
    assert checks["chatwoot webhook"].outcome == outcome
    assert "message_updated" in checks["chatwoot webhook"].detail


@pytest.mark.parametrize(
    ("version", "mode"),
    [("4.12", "agent_bot"), ("4.10", "account_webhook")],
)
async def test_secret_on_a_chatwoot_too_old_to_sign_fails(
    served: list[SimThread], version: str, mode: str
) -> None:
    sim = serve(served, chatwoot_version=version, mode=mode, webhook_url=RECEIVER)
    checks = await direct(sim, ADMIN_TOKEN, CHATWOOT_WEBHOOK_SECRET=SECRET)
    signing = checks["chatwoot signing"]
    assert signing.outcome == "fail"
    assert f"Chatwoot {version}.0 does not sign" in signing.detail
    assert "unset it or upgrade Chatwoot" in signing.detail
    assert "lacks:" in checks["chatwoot version"].detail


async def test_bot_token_on_a_version_before_bots_may_read(served: list[SimThread]) -> None:
    sim = serve(served, chatwoot_version="4.14")
    checks = await direct(sim, BOT_TOKEN, CHATWOOT_ACCOUNT_ID="7")
    assert checks["chatwoot account"].outcome == "warn"
    assert "from 4.15" in checks["chatwoot account"].detail


async def test_private_receiver_url_warns(served: list[SimThread]) -> None:
    url = "http://127.0.0.1:8000/webhooks/chatwoot"
    sim = serve(served, webhook_url=url, safe_fetch_allow_private_network=False)
    checks = await direct(sim, ADMIN_TOKEN)
    assert checks["chatwoot reaches sluice"].outcome == "warn"
    assert "SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true" in checks["chatwoot reaches sluice"].detail


# --- pure rules ----------------------------------------------------------------------------------

BOT = Receiver("agent_bot", 5, "Sluice", RECEIVER, "s1")
HOOK = Receiver("account_webhook", 3, None, RECEIVER, None)


@pytest.mark.parametrize(
    ("secret", "version", "receivers", "outcome", "words"),
    [
        ("s1", None, None, "warn", "version is unknown"),
        ("s1", (4, 11, 1), None, "fail", "signs no delivery"),
        ("s1", (4, 11, 2), None, "warn", "not agent bots"),
        ("s1", (4, 12, 0), [HOOK], "pass", "signs account webhooks"),
        ("s1", (4, 12, 0), [BOT], "fail", "does not sign the deliveries of agent bot 5"),
        ("s1", (4, 16, 2), [BOT], "pass", "is the secret of agent bot 5"),
        ("s2", (4, 16, 2), [BOT], "fail", "is not the secret of agent bot 5"),
        (None, (4, 10, 0), None, "pass", "signs nothing"),
        (None, (4, 12, 0), [BOT], "pass", "does not sign agent bot 5"),
        (None, (4, 16, 2), [BOT], "warn", "accepts unsigned deliveries"),
    ],
)
def test_signing_rules(
    secret: str | None,
    version: tuple[int, int, int] | None,
    receivers: list[Receiver] | None,
    outcome: str,
    words: str,
) -> None:
    check = signing_check(secret, version, receivers)
    assert check.outcome == outcome, check
    assert words in check.detail, check
    if secret:
        assert secret not in check.detail


def test_unknown_version_is_said() -> None:
    check = version_check(None, None)
    assert check.outcome == "warn"
    assert check.detail.startswith("unknown")
