"""Creating (or reusing) the receiver in Chatwoot: an agent bot linked to inboxes, or an
account webhook subscribed to the events Sluice needs.

Both are idempotent, following what Chatwoot allows: a bot or webhook already sending to
the same URL is reused (a webhook missing some events gets them added; Chatwoot keeps a
webhook URL unique per account), an inbox already linked to the bot is left alone. Because
Chatwoot would deliver every message twice when both kinds send to the same URL, each mode
warns about a receiver of the other kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sluice.chatwoot.admin import ChatwootAdminClient
from sluice.chatwoot.errors import ChatwootError
from sluice.chatwoot.features import ACCOUNT_WEBHOOKS_SIGNED, Version
from sluice.chatwoot.receivers import NEEDED_EVENTS, same_url
from sluice.chatwoot.setup_advice import answer_open_advice, bot_next_steps, secret_advice
from sluice.chatwoot.setup_errors import SetupError, explain
from sluice.chatwoot.setup_output import Printer, named, next_steps
from sluice.chatwoot.setup_plan import BOT_DESCRIPTION, Mode, SetupOptions
from sluice.settings.config import redact_url


@dataclass
class SetupContext:
    """What the run has established before it acts: the account and Chatwoot's version."""

    client: ChatwootAdminClient
    account_id: int
    url: str
    version: Version | None
    options: SetupOptions


async def _inboxes(ctx: SetupContext) -> dict[int, dict[str, Any]]:
    """The account's inboxes by id, after checking every ``--inbox`` is one of them."""
    try:
        inboxes = await ctx.client.list_inboxes(ctx.account_id)
    except ChatwootError as exc:
        raise explain(exc, account_id=ctx.account_id, action="list its inboxes") from None
    by_id = {int(i["id"]): i for i in inboxes if isinstance(i.get("id"), int)}
    unknown = [i for i in ctx.options.inboxes if i not in by_id]
    if unknown:
        listed = ", ".join(named(i) for i in by_id.values()) or "none"
        raise SetupError(
            f"no inbox {', '.join(map(str, unknown))} in account {ctx.account_id}; its inboxes: "
            f"{listed}",
            "pass --inbox with one of these ids (Settings → Inboxes; the id is in the address)",
        )
    return by_id


async def setup_agent_bot(ctx: SetupContext, out: Printer) -> None:
    """``--mode agent-bot``: reuse or create the bot, link it to the chosen inboxes."""
    client, account_id, url = ctx.client, ctx.account_id, ctx.url
    inboxes = await _inboxes(ctx)
    try:
        bots = await client.list_agent_bots(account_id)
    except ChatwootError as exc:
        raise explain(exc, account_id=account_id, action="list agent bots") from None
    same = sorted((b for b in bots if same_url(b.get("outgoing_url"), url)), key=_id_key)
    if same:
        bot = same[0]
        out.ok(f"reusing agent bot {named(bot)}: it already sends to {redact_url(url)}")
        if len(same) > 1:
            others = ", ".join(named(b) for b in same[1:])
            out.warn(f"agent bots {others} send there too: delete them (Settings → Bots)")
    else:
        try:
            bot = await client.create_agent_bot(
                account_id, name=ctx.options.name, outgoing_url=url, description=BOT_DESCRIPTION
            )
        except ChatwootError as exc:
            raise explain(exc, account_id=account_id, action="create an agent bot") from None
        out.ok(f"created agent bot {named(bot)} with outgoing_url {redact_url(url)}")
    bot_id = bot.get("id")
    if not isinstance(bot_id, int):
        raise SetupError("Chatwoot's agent bot has no id", "look at Chatwoot's logs")
    for inbox_id in ctx.options.inboxes:
        inbox = named(inboxes[inbox_id])
        try:
            current = await client.inbox_agent_bot(account_id, inbox_id)
            if current is not None and current.get("id") == bot_id:
                out.ok(f"inbox {inbox} already has this bot")
                continue
            await client.set_inbox_agent_bot(account_id, inbox_id, bot_id)
        except ChatwootError as exc:
            raise explain(
                exc, account_id=account_id, action=f"link the bot to inbox {inbox_id}"
            ) from None
        if current is not None:
            out.ok(f"linked inbox {inbox} to the bot, replacing agent bot {named(current)}")
        else:
            out.ok(f"linked inbox {inbox} to the bot")
    if not ctx.options.inboxes:
        listed = ", ".join(named(i) for i in inboxes.values()) or "none"
        out.warn(
            "no --inbox given: the bot receives nothing until it is linked to an inbox "
            f"(run again with --inbox ID, or Settings → Inboxes → Bot configuration); "
            f"inboxes: {listed}"
        )
    await _also(ctx, out, "account-webhook")
    bot_next_steps(out, bot, name=ctx.options.name, version=ctx.version, account_id=ctx.account_id)


def _id_key(item: dict[str, Any]) -> int:
    value = item.get("id")
    return value if isinstance(value, int) else 1 << 62


async def setup_account_webhook(ctx: SetupContext, out: Printer) -> None:
    """``--mode account-webhook``: reuse (subscribing it to missing events) or create it."""
    client, account_id, url = ctx.client, ctx.account_id, ctx.url
    if ctx.options.inboxes:
        out.warn("--inbox is ignored: an account webhook gets the events of every inbox")
    try:
        webhooks = await client.list_webhooks(account_id)
    except ChatwootError as exc:
        raise explain(exc, account_id=account_id, action="list webhooks") from None
    existing = next((w for w in webhooks if same_url(w.get("url"), url)), None)
    try:
        if existing is None:
            webhook = await client.create_webhook(
                account_id, url=url, subscriptions=NEEDED_EVENTS, name=ctx.options.name
            )
            out.ok(
                f"created account webhook {webhook.get('id')} for {redact_url(url)}, subscribed to "
                + ", ".join(NEEDED_EVENTS)
            )
        else:
            webhook = existing
            current = [s for s in existing.get("subscriptions") or [] if isinstance(s, str)]
            missing = [e for e in NEEDED_EVENTS if e not in current]
            if missing:
                webhook = await client.update_webhook(
                    account_id,
                    int(existing["id"]),
                    url=str(existing["url"]),
                    subscriptions=[*current, *missing],
                )
                out.ok(
                    f"reusing account webhook {existing.get('id')} for {redact_url(url)}; "
                    f"subscribed it to {', '.join(missing)} too"
                )
            else:
                out.ok(
                    f"reusing account webhook {existing.get('id')}: it already sends "
                    f"{', '.join(NEEDED_EVENTS)} to {redact_url(url)}"
                )
    except ChatwootError as exc:
        action = "create the webhook" if existing is None else "update the webhook"
        raise explain(exc, account_id=account_id, action=action) from None
    await _also(ctx, out, "agent-bot")
    settings, notes = secret_advice(
        webhook.get("secret") or (existing or {}).get("secret"),
        ctx.version,
        "account webhook",
        ACCOUNT_WEBHOOKS_SIGNED,
        "Settings → Integrations → Webhooks",
    )
    settings.append(f"CHATWOOT_ACCOUNT_ID={account_id}")
    more_settings, more_notes = await answer_open_advice(ctx.client, ctx.account_id)
    notes.append(
        "account webhooks are sent once and never retried: Sluice's durable intake spool "
        "keeps each delivery it acknowledged"
    )
    next_steps(out, settings + more_settings, notes + more_notes)


async def _also(ctx: SetupContext, out: Printer, other: Mode) -> None:
    """Warn when the other kind of receiver sends to the same URL (every message twice)."""
    try:
        if other == "account-webhook":
            what, key = "account webhook", "url"
            found = await ctx.client.list_webhooks(ctx.account_id)
        else:
            what, key = "agent bot", "outgoing_url"
            found = await ctx.client.list_agent_bots(ctx.account_id)
    except ChatwootError:
        return  # only a courtesy check
    for hit in (item for item in found if same_url(item.get(key), ctx.url)):
        out.warn(
            f"{what} {named(hit)} sends to the same URL: Chatwoot then delivers every message "
            "twice (Sluice drops the duplicate, but keep one of the two; docs/chatwoot.md)"
        )
