"""What ``sluice chatwoot setup`` tells the operator to set in Sluice's environment next.

The settings depend on what Chatwoot showed: the receiver's secret is in its JSON only for
administrators and only in newer versions (docs/chatwoot-facts.md §9), a version that does
not sign a receiver's deliveries must not be given a secret (Sluice would refuse every one
with 401), and whether conversations start open depends on each inbox having an agent bot
(facts §10).
"""

from __future__ import annotations

from typing import Any

from sluice.chatwoot.admin import ChatwootAdminClient
from sluice.chatwoot.errors import ChatwootError
from sluice.chatwoot.features import AGENT_BOTS_SIGNED, Version, format_version
from sluice.chatwoot.setup_output import Printer, named, next_steps


def secret_advice(
    secret: object, version: Version | None, what: str, first: Version, where: str
) -> tuple[list[str], list[str]]:
    """CHATWOOT_WEBHOOK_SECRET: the receiver's secret when its JSON carries it; else where it
    is, or, on a version that does not sign this receiver, to leave it unset."""
    if isinstance(secret, str) and secret:
        return [f"CHATWOOT_WEBHOOK_SECRET={secret}"], [
            f"CHATWOOT_WEBHOOK_SECRET is the {what}'s secret: Chatwoot signs each delivery "
            "with it, and Sluice then refuses unsigned ones"
        ]
    release = format_version(first)
    if version is not None and version < first:
        return [], [
            f"leave CHATWOOT_WEBHOOK_SECRET unset: Chatwoot {format_version(version)} does not "
            f"sign {what} deliveries ({release} and later do), so with a secret Sluice would "
            "refuse every one with 401"
        ]
    return [], [
        f"CHATWOOT_WEBHOOK_SECRET: the {what}'s secret, on {where} (administrators). Chatwoot "
        f"signs {what} deliveries only from {release}: on an older one leave it unset, or "
        "Sluice refuses every delivery with 401"
    ]


def bot_next_steps(
    out: Printer,
    bot: dict[str, Any],
    *,
    name: str,
    version: Version | None,
    account_id: int,
) -> None:
    """Where the bot's secret and access token are (facts §9): in its JSON for
    administrators in newer versions (secret from 4.13, #13892; access_token since #14830),
    else on its settings page."""
    page = f"Settings → Bots → {bot.get('name') or name}"
    settings, notes = secret_advice(
        bot.get("secret"), version, "agent bot", AGENT_BOTS_SIGNED, page
    )
    settings += [f"CHATWOOT_AGENT_BOT_ID={bot.get('id')}", f"CHATWOOT_ACCOUNT_ID={account_id}"]
    notes.append(
        "CHATWOOT_AGENT_BOT_ID posts replies as the bot with a user token; keep "
        "CHATWOOT_API_TOKEN a user's (an administrator's): a bot token cannot list messages "
        "or agents"
    )
    in_json = (
        f"in its JSON (GET /api/v1/accounts/{account_id}/agent_bots, administrators) and "
        if "access_token" in bot
        else ""
    )
    notes.append(f"the bot's own access token is {in_json}on {page}")
    next_steps(out, settings, notes)


async def answer_open_advice(
    client: ChatwootAdminClient, account_id: int
) -> tuple[list[str], list[str]]:
    """CHATWOOT_ANSWER_OPEN for an account webhook: conversations of an inbox without an
    agent bot start open (facts §10), so Sluice must be told to answer open ones; in an
    inbox with a bot they start pending and open means a human has them."""
    try:
        inboxes = await client.list_inboxes(account_id)
        with_bot: list[str] = []
        without: list[str] = []
        for inbox in inboxes[:50]:
            if not isinstance(inbox.get("id"), int):
                continue
            bot = await client.inbox_agent_bot(account_id, inbox["id"])
            (with_bot if bot is not None else without).append(named(inbox))
    except ChatwootError:
        return [], [
            "for inboxes without an agent bot (their conversations start open) also set "
            "CHATWOOT_ANSWER_OPEN=true"
        ]
    if without and not with_bot:
        return ["CHATWOOT_ANSWER_OPEN=true"], [
            "CHATWOOT_ANSWER_OPEN: no inbox has an agent bot, so conversations start open and "
            "Sluice must answer open ones nobody is assigned to"
        ]
    if without:
        return [], [
            f"inboxes {', '.join(without)} have no agent bot (conversations start open) while "
            f"{', '.join(with_bot)} have one (open there means a human has it): "
            "CHATWOOT_ANSWER_OPEN applies to all, so leave it unset and link a bot to the "
            "first ones, or use --mode agent-bot"
        ]
    return [], ["leave CHATWOOT_ANSWER_OPEN unset: every inbox has an agent bot"]
