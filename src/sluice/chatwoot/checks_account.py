"""``sluice validate``: whose the token is, which account it reaches, and the agents of
that account.

Chatwoot answers ``GET /api/v1/profile`` with the token's user and its accounts (and roles),
and an agent bot's token with 401 "not authorized for bots" (facts §4): a bot token can post
replies but may not list messages or agents, so it is a warning. A user who is an agent, not
an administrator, becomes the assignee of every conversation the token opens and may not list
receivers. With a user token the account's receivers are checked next
(:mod:`sluice.chatwoot.checks_receivers`), then every human broker's agent id, since
Chatwoot unassigns on an unknown one (facts §5).
"""

from __future__ import annotations

from sluice.broker.config import load_brokers_from_env
from sluice.chatwoot.admin import ChatwootAdminClient, refusal, said
from sluice.chatwoot.checks_receivers import (
    Receiver,
    look_for_receivers,
    private_address_checks,
    receiver_checks,
)
from sluice.chatwoot.errors import ChatwootError
from sluice.chatwoot.features import Version
from sluice.settings.check import Check, Outcome
from sluice.settings.config import ConfigError, Settings


async def token_and_account_checks(
    client: ChatwootAdminClient, settings: Settings, version: Version | None
) -> tuple[list[Check], list[Receiver] | None]:
    """The token, the account and, with a user token that reaches it, the account's
    receivers, their addresses and the human brokers' agents; the receivers as
    :func:`~sluice.chatwoot.checks_receivers.receiver_checks` returns them (None: unknown)."""
    checks: list[Check] = []
    try:
        profile = await client.profile()
    except ChatwootError as exc:
        kind = refusal(exc)
        if kind == "bot_token":
            return await _bot_token(client, settings), None
        if kind == "invalid_token":
            detail = (
                f"Chatwoot refused CHATWOOT_API_TOKEN (401: {said(exc)}): copy an access token "
                "from Profile settings → Access Token (an administrator's)"
            )
        else:
            status = exc.status if exc.status is not None else "no answer"
            detail = f"GET /api/v1/profile: {status} ({said(exc)})"
        return [Check("chatwoot token", "fail", detail)], None
    name = str(profile.get("name") or f"user {profile.get('id')}")
    accounts = [a for a in profile.get("accounts") or [] if isinstance(a, dict)]
    account_id = settings.chatwoot_account_id
    if account_id is None and len(accounts) == 1 and isinstance(accounts[0].get("id"), int):
        account_id = accounts[0]["id"]
    membership = next((a for a in accounts if a.get("id") == account_id), None)
    role = membership.get("role") if membership else None
    if role == "administrator":
        checks.append(
            Check(
                "chatwoot token",
                "pass",
                f"user token of {name}, administrator of account {account_id}",
            )
        )
    elif role is not None:
        checks.append(
            Check(
                "chatwoot token",
                "warn",
                f"user token of {name}, {role} in account {account_id}: Chatwoot makes an agent "
                "the assignee of every conversation its token opens (a handoff then lands on "
                "this agent), and only administrators may list agent bots and webhooks; use an "
                "administrator's token",
            )
        )
    else:
        checks.append(Check("chatwoot token", "pass", f"user token of {name}"))
    if account_id is None:
        listed = ", ".join(str(a.get("id")) for a in accounts) or "none"
        checks.append(
            Check(
                "chatwoot account",
                "warn",
                f"CHATWOOT_ACCOUNT_ID is not set and the token's user is in several accounts "
                f"({listed}): set it to check the account and its receivers",
            )
        )
        return checks, None
    if membership is None:
        listed = ", ".join(f"{a.get('id')} ({a.get('name')})" for a in accounts) or "none"
        checks.append(
            Check(
                "chatwoot account",
                "fail",
                f"{name} is not a member of account {account_id} (their accounts: {listed}): "
                "check CHATWOOT_ACCOUNT_ID (the number after /app/accounts/)",
            )
        )
        return checks, None
    try:
        inboxes = await client.list_inboxes(account_id)
    except ChatwootError as exc:
        checks.append(
            Check("chatwoot account", "fail", f"account {account_id}: {exc.status} ({said(exc)})")
        )
        return checks, None
    count = f"{len(inboxes)} inbox{'es' if len(inboxes) != 1 else ''}"
    checks.append(
        Check(
            "chatwoot account", "pass", f"account {account_id} ({membership.get('name')}): {count}"
        )
    )
    try:
        seen = await look_for_receivers(client, account_id, inboxes)
    except ChatwootError as exc:
        checks.append(
            Check(
                "chatwoot receiver", "warn", f"could not list receivers: {exc.status} ({said(exc)})"
            )
        )
        return checks, None
    more, receivers = receiver_checks(seen, settings, account_id)
    checks += more
    checks += await private_address_checks(receivers or [], version)
    checks += await _broker_agents(client, account_id)
    return checks, receivers


async def _broker_agents(client: ChatwootAdminClient, account_id: int) -> list[Check]:
    """Every human broker's ``agent_id`` is an agent of the account: Chatwoot unassigns when
    asked to assign an unknown agent id (facts §5), so such a handoff reaches nobody."""
    try:
        brokers = load_brokers_from_env()
    except ConfigError:
        return []  # reported by the worker at startup, with the offending entry
    humans = [b for b in brokers if b.kind == "human" and b.agent_id is not None]
    if not humans:
        return []
    try:
        agents = await client.list_agents(account_id)
    except ChatwootError as exc:
        return [Check("chatwoot agents", "warn", f"cannot list agents: {exc.status} ({said(exc)})")]
    names = {a.get("id"): str(a.get("name")) for a in agents}
    unknown = [b for b in humans if b.agent_id not in names]
    if unknown:
        listed = ", ".join(f"{b.name} (agent_id {b.agent_id})" for b in unknown)
        return [
            Check(
                "chatwoot agents",
                "fail",
                f"human brokers {listed} are not agents of account {account_id}: Chatwoot "
                "unassigns on an unknown agent id, so their handoffs reach nobody; the ids are "
                f"those of GET /api/v1/accounts/{account_id}/agents",
            )
        ]
    listed = ", ".join(f"{b.name} = {names[b.agent_id]}" for b in humans)
    return [
        Check(
            "chatwoot agents", "pass", f"human brokers are agents of account {account_id}: {listed}"
        )
    ]


async def _bot_token(client: ChatwootAdminClient, settings: Settings) -> list[Check]:
    """An agent bot's token: a warning, and whether the bot serves the account (a probe
    whose 401 or 404 says so, as far as this version lets a bot read conversations)."""
    checks = [
        Check(
            "chatwoot token",
            "warn",
            "an agent bot's token: replies work, but it may not list messages (the duplicate-"
            "reply check then sees only a conversation's last message) or agents, nor show "
            "the receivers to this check; a user token of an administrator is better",
        )
    ]
    account_id = settings.chatwoot_account_id
    if account_id is None:
        checks.append(
            Check(
                "chatwoot account",
                "warn",
                "CHATWOOT_ACCOUNT_ID is not set: a bot token cannot tell which account to check",
            )
        )
        return checks
    try:
        await client.probe_account_as_bot(account_id)
    except ChatwootError as exc:
        kind = refusal(exc)
        outcome: Outcome
        if kind == "not_member":
            outcome, detail = (
                "fail",
                f"the bot serves no inbox of account {account_id} (401: {said(exc)}): link it "
                "to an inbox (Settings → Inboxes → Bot configuration) or check "
                "CHATWOOT_ACCOUNT_ID",
            )
        elif kind == "bot_token":
            outcome, detail = (
                "warn",
                f"account {account_id}: not checkable with a bot token on this version (bots "
                "may read conversations from 4.15)",
            )
        elif exc.status == 404:
            outcome, detail = (
                "warn",
                f"account {account_id}: not confirmed (Chatwoot answers a bot 404 both for a "
                "missing account and for the probe's missing conversation)",
            )
        else:
            status = exc.status if exc.status is not None else "no answer"
            outcome, detail = "fail", f"account {account_id}: {status} ({said(exc)})"
        checks.append(Check("chatwoot account", outcome, detail))
    else:
        checks.append(Check("chatwoot account", "pass", f"account {account_id} answers the bot"))
    return checks
