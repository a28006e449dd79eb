"""``sluice validate``: what in Chatwoot delivers to Sluice, as far as the token may see.

A receiver is an agent bot, an account webhook or an API inbox whose URL is a Sluice intake
(:mod:`sluice.chatwoot.receivers`). An agent bot receives nothing until it is linked to an
inbox; an account webhook without ``message_created`` brings no customer message; two kinds
at once deliver every message twice. Listing agent bots and webhooks is administrator-only
in Chatwoot, while the bot linked to an inbox is visible to any member, so what cannot be
seen with this token is a warning, not a failure. From Chatwoot 4.14 (PR #14155) a receiver
on a private or loopback address is refused unless SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sluice.chatwoot.admin import ChatwootAdminClient, refusal
from sluice.chatwoot.errors import ChatwootError
from sluice.chatwoot.features import PRIVATE_URLS_REFUSED, Version, format_version
from sluice.chatwoot.receivers import NEEDED_EVENTS, is_receiver_url, private_destination
from sluice.settings.check import Check, Outcome
from sluice.settings.config import Settings, redact_url

ReceiverKind = Literal["agent_bot", "account_webhook", "api_inbox"]
MAX_INBOXES = 50  # inboxes whose linked bot is looked up, one request each
SETUP_HINT = "sluice chatwoot setup --mode agent-bot|account-webhook --public-url …"
WHERE_SECRET: dict[ReceiverKind, str] = {
    "agent_bot": "Settings → Bots → the bot",
    "account_webhook": "Settings → Integrations → Webhooks",
    "api_inbox": "Settings → Inboxes → the inbox → Configuration",
}
KIND_NAME: dict[ReceiverKind, str] = {
    "agent_bot": "agent bot",
    "account_webhook": "account webhook",
    "api_inbox": "API inbox",
}


@dataclass(frozen=True)
class Receiver:
    """Something in Chatwoot that delivers to a Sluice intake URL."""

    kind: ReceiverKind
    id: object
    name: str | None
    url: str
    secret: str | None = None  # None: not in the JSON this token sees

    @property
    def label(self) -> str:
        name = f" ({self.name})" if self.name else ""
        return f"{KIND_NAME[self.kind]} {self.id}{name}"


@dataclass
class SeenReceivers:
    """What the token could see of the account's receivers."""

    bots: list[dict[str, Any]] | None = None  # None: may not list them
    webhooks: list[dict[str, Any]] | None = None
    inboxes: list[dict[str, Any]] | None = None
    links: dict[int, dict[str, Any]] | None = None  # inbox id -> linked bot


async def look_for_receivers(
    client: ChatwootAdminClient, account_id: int, inboxes: list[dict[str, Any]]
) -> SeenReceivers:
    """The account's agent bots, webhooks and the bot linked to each inbox (up to
    :data:`MAX_INBOXES`), each None where Chatwoot refuses this token."""
    seen = SeenReceivers(inboxes=inboxes)

    async def allowed(call: Any) -> Any:
        try:
            return await call
        except ChatwootError as exc:
            if refusal(exc) is not None:
                return None
            raise

    seen.bots = await allowed(client.list_agent_bots(account_id))
    seen.webhooks = await allowed(client.list_webhooks(account_id))
    links: dict[int, dict[str, Any]] = {}
    for inbox in inboxes[:MAX_INBOXES]:
        inbox_id = inbox.get("id")
        if not isinstance(inbox_id, int):
            continue
        bot = await allowed(client.inbox_agent_bot(account_id, inbox_id))
        if bot is not None:
            links[inbox_id] = bot
    seen.links = links
    return seen


def receiver_checks(
    seen: SeenReceivers, settings: Settings, account_id: int
) -> tuple[list[Check], list[Receiver] | None]:
    """One check per receiver seen, and the receivers; the receivers are None when what
    delivers to Sluice cannot be determined with this token."""
    checks: list[Check] = []
    inbox_names = {
        i["id"]: str(i.get("name") or i["id"])
        for i in seen.inboxes or []
        if isinstance(i.get("id"), int)
    }
    # Bots: those listed, plus those linked to an inbox (visible to any member).
    bots: dict[object, dict[str, Any]] = {b.get("id"): b for b in seen.bots or []}
    for bot in (seen.links or {}).values():
        bots.setdefault(bot.get("id"), bot)
    linked_to: dict[object, list[str]] = {}
    for inbox_id, bot in (seen.links or {}).items():
        linked_to.setdefault(bot.get("id"), []).append(f"{inbox_id} ({inbox_names.get(inbox_id)})")
    receivers: list[Receiver] = []
    for bot in bots.values():
        if not is_receiver_url(bot.get("outgoing_url")):
            continue
        receiver = Receiver(
            "agent_bot",
            bot.get("id"),
            bot.get("name"),
            str(bot["outgoing_url"]),
            _text(bot.get("secret")),
        )
        inboxes = linked_to.get(bot.get("id"), [])
        if inboxes:
            receivers.append(receiver)
            checks.append(
                Check(
                    "chatwoot agent bot",
                    "pass",
                    f"{receiver.label} sends to {redact_url(receiver.url)}, linked to inbox "
                    + ", ".join(inboxes),
                )
            )
        else:
            checks.append(
                Check(
                    "chatwoot agent bot",
                    "fail",
                    f"{receiver.label} sends to {redact_url(receiver.url)} but is linked to no "
                    f"inbox, so it receives nothing: {SETUP_HINT} --inbox ID",
                )
            )
    wanted_bot = settings.chatwoot_agent_bot_id
    if wanted_bot is not None and seen.bots is not None and wanted_bot not in bots:
        checks.append(
            Check(
                "chatwoot agent bot",
                "warn",
                f"CHATWOOT_AGENT_BOT_ID={wanted_bot} names no agent bot of account {account_id}: "
                "replies are not posted as a bot",
            )
        )
    for webhook in seen.webhooks or []:
        if not is_receiver_url(webhook.get("url")):
            continue
        receiver = Receiver(
            "account_webhook",
            webhook.get("id"),
            _text(webhook.get("name")),
            str(webhook["url"]),
            _text(webhook.get("secret")),
        )
        receivers.append(receiver)
        subscribed = {s for s in webhook.get("subscriptions") or [] if isinstance(s, str)}
        missing = [e for e in NEEDED_EVENTS if e not in subscribed]
        where = f"{receiver.label} sends to {redact_url(receiver.url)}"
        outcome: Outcome
        if "message_created" in missing:
            outcome = "fail"
            why = "no customer message reaches Sluice"
        else:
            outcome = "warn"
            why = "Sluice misses those changes (a takeover, a resolved or pending conversation)"
        if missing:
            detail = (
                f"{where} without {', '.join(missing)}: {why}; "
                f"{SETUP_HINT.replace('agent-bot|', '')} adds them"
            )
        else:
            outcome, detail = "pass", f"{where}, subscribed to {', '.join(NEEDED_EVENTS)}"
        checks.append(Check("chatwoot webhook", outcome, detail))
    for inbox in seen.inboxes or []:
        if is_receiver_url(inbox.get("webhook_url")):
            receiver = Receiver(
                "api_inbox", inbox.get("id"), _text(inbox.get("name")), str(inbox["webhook_url"])
            )
            receivers.append(receiver)
            checks.append(
                Check(
                    "chatwoot api inbox",
                    "pass",
                    f"{receiver.label} sends to {redact_url(receiver.url)}",
                )
            )
    determinable = seen.bots is not None and seen.webhooks is not None
    if not receivers and not any(c.outcome == "fail" for c in checks):
        if determinable:
            checks.append(
                Check(
                    "chatwoot receiver",
                    "fail",
                    f"nothing in account {account_id} delivers to a …/webhooks/chatwoot URL (no "
                    f"linked agent bot, account webhook or API inbox): {SETUP_HINT}",
                )
            )
        else:
            checks.append(
                Check(
                    "chatwoot receiver",
                    "warn",
                    "unknown: listing agent bots and account webhooks needs an administrator's "
                    "token, and no inbox has a bot sending to …/webhooks/chatwoot",
                )
            )
    kinds = {r.kind for r in receivers}
    if len(kinds) > 1:
        checks.append(
            Check(
                "chatwoot receiver",
                "warn",
                "several receivers deliver to Sluice ("
                + ", ".join(r.label for r in receivers)
                + "): every message arrives more than once (Sluice drops the duplicates) and "
                "each has its own secret, while Sluice checks one; keep one (docs/chatwoot.md)",
            )
        )
    return checks, (receivers if receivers or determinable else None)


def _text(value: object) -> str | None:
    """A non-empty string, else None (a secret or name the JSON does not show)."""
    return value if isinstance(value, str) and value else None


async def private_address_checks(receivers: list[Receiver], version: Version | None) -> list[Check]:
    """A warning for each receiver URL this Chatwoot version will refuse as private."""
    if version is not None and version < PRIVATE_URLS_REFUSED:
        return []
    checks = []
    for url in dict.fromkeys(r.url for r in receivers):
        if await private_destination(url):
            when = f"Chatwoot {format_version(version)}" if version else "Chatwoot 4.14 and later"
            checks.append(
                Check(
                    "chatwoot reaches sluice",
                    "warn",
                    f"{redact_url(url)} is a private or loopback address: {when} refuses such "
                    "webhook URLs unless SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true is set in "
                    "Chatwoot's environment (each bot delivery then opens the conversation)",
                )
            )
    return checks
