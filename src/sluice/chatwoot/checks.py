"""``sluice validate``'s Chatwoot checks (run when CHATWOOT_URL is set).

In order: Chatwoot answers at CHATWOOT_URL and which version it reports (``GET /api``); the
token is valid, and whose it is (``GET /api/v1/profile`` answers a user, and 401 "not
authorized for bots" to an agent bot's token); the account is reachable with it; what
delivers to Sluice (an agent bot linked to an inbox, an account webhook with the events
Sluice needs, an API inbox), as far as the token may see; whether signing works with this
version and secret; which version-dependent features this Chatwoot has.

A failure is something that stops messages or replies (Chatwoot unreachable, a token it
refuses, an account the token cannot use, a receiver without ``message_created`` or linked to
no inbox, a secret that makes Sluice refuse every delivery). A warning is something to look
at, or what cannot be determined with this token. Never prints the token or a secret.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any, Literal

from sluice.broker.config import load_brokers_from_env
from sluice.chatwoot.admin import ChatwootAdminClient, refusal, said
from sluice.chatwoot.client import ChatwootError
from sluice.chatwoot.features import (
    ACCOUNT_WEBHOOKS_SIGNED,
    AGENT_BOTS_SIGNED,
    PRIVATE_URLS_REFUSED,
    Version,
    features_of,
    format_version,
    parse_version,
    signs,
)
from sluice.chatwoot.setup import NEEDED_EVENTS, is_receiver_url, private_destination
from sluice.config import ConfigError, Settings, redact_url
from sluice.validate import Check, Outcome

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


def _signing_kind(kind: ReceiverKind) -> str:
    # API inboxes are signed with agent bots (PR #13892).
    return "account_webhook" if kind == "account_webhook" else "agent_bot"


def version_check(version: Version | None, reported: str | None) -> Check:
    """The reported version and what it means for Sluice (facts, by release)."""
    if version is None:
        return Check(
            "chatwoot version",
            "warn",
            "unknown (GET /api reported none): signing and the other version-dependent "
            "behaviour cannot be checked",
        )
    has, lacks = features_of(version)
    detail = f"{reported}; has: " + "; ".join(f.label() for f in has) if has else f"{reported}"
    if lacks:
        detail += "; lacks: " + "; ".join(f.label() for f in lacks)
    return Check("chatwoot version", "pass", detail)


def signing_check(
    secret: str | None, version: Version | None, receivers: list[Receiver] | None
) -> Check:
    """Whether signing works: CHATWOOT_WEBHOOK_SECRET against the version (account webhooks
    are signed from 4.11.2, agent bots and API inboxes from 4.13; an unsigned delivery to a
    Sluice with a secret is refused with 401) and against the receivers' own secrets when
    their JSON shows them. ``receivers`` None: not determinable with this token."""
    name = "chatwoot signing"
    shown = format_version(version) if version is not None else None
    if not secret:
        if version is not None and version < ACCOUNT_WEBHOOKS_SIGNED:
            return Check(
                name, "pass", f"CHATWOOT_WEBHOOK_SECRET unset; Chatwoot {shown} signs nothing"
            )
        if (
            version is not None
            and receivers
            and not any(signs(version, _signing_kind(r.kind)) for r in receivers)
        ):
            return Check(
                name,
                "pass",
                f"CHATWOOT_WEBHOOK_SECRET unset; Chatwoot {shown} does not sign "
                + ", ".join(r.label for r in receivers),
            )
        where = (
            f" (the secret of {receivers[0].label}: {WHERE_SECRET[receivers[0].kind]})"
            if receivers
            else ""
        )
        return Check(
            name,
            "warn",
            "CHATWOOT_WEBHOOK_SECRET is not set: Sluice accepts unsigned deliveries, so anyone "
            f"who can reach /webhooks/chatwoot can write as a customer; set it{where}",
        )
    if version is None:
        return Check(
            name,
            "warn",
            "CHATWOOT_WEBHOOK_SECRET is set but Chatwoot's version is unknown: Chatwoot signs "
            "account webhooks only from 4.11.2 and agent bots from 4.13; on an older Chatwoot "
            "Sluice refuses every delivery with 401 (then unset the secret)",
        )
    if receivers:
        unsigned = [r for r in receivers if not signs(version, _signing_kind(r.kind))]
        if unsigned:
            return Check(
                name,
                "fail",
                f"Chatwoot {shown} does not sign the deliveries of "
                + ", ".join(r.label for r in unsigned)
                + " (account webhooks are signed from 4.11.2, agent bots from 4.13): with "
                "CHATWOOT_WEBHOOK_SECRET set Sluice refuses every one with 401; unset it or "
                "upgrade Chatwoot",
            )
    elif version < ACCOUNT_WEBHOOKS_SIGNED:
        return Check(
            name,
            "fail",
            f"Chatwoot {shown} signs no delivery (account webhooks from 4.11.2, agent bots "
            "from 4.13): with CHATWOOT_WEBHOOK_SECRET set Sluice refuses every one with 401; "
            "unset it or upgrade Chatwoot",
        )
    elif version < AGENT_BOTS_SIGNED:
        return Check(
            name,
            "warn",
            f"Chatwoot {shown} signs account webhooks but not agent bots (from 4.13): "
            "deliveries of an agent bot would all be refused with 401",
        )
    known = [r for r in receivers or [] if r.secret]
    matched = [r for r in known if hmac.compare_digest(r.secret or "", secret)]
    other = [r for r in known if r not in matched]
    if other and not matched:
        return Check(
            name,
            "fail",
            "CHATWOOT_WEBHOOK_SECRET is not the secret of "
            + ", ".join(r.label for r in other)
            + ": Sluice refuses every delivery with 401; copy it from "
            + WHERE_SECRET[other[0].kind]
            + " (sluice chatwoot setup prints it)",
        )
    if other:
        return Check(
            name,
            "warn",
            f"CHATWOOT_WEBHOOK_SECRET is the secret of {matched[0].label} but not of "
            + ", ".join(r.label for r in other)
            + ": the deliveries of the latter are refused with 401",
        )
    if matched:
        return Check(
            name,
            "pass",
            f"CHATWOOT_WEBHOOK_SECRET is the secret of {matched[0].label}; Chatwoot {shown} "
            "signs its deliveries",
        )
    return Check(
        name,
        "pass",
        f"CHATWOOT_WEBHOOK_SECRET set; Chatwoot {shown} signs "
        + (
            "account webhooks and agent bots"
            if version >= AGENT_BOTS_SIGNED
            else "account webhooks"
        )
        + " (the receiver's secret itself is not visible to this token)",
    )


@dataclass
class _Seen:
    """What the token could see of the account's receivers."""

    bots: list[dict[str, Any]] | None = None  # None: may not list them
    webhooks: list[dict[str, Any]] | None = None
    inboxes: list[dict[str, Any]] | None = None
    links: dict[int, dict[str, Any]] | None = None  # inbox id -> linked bot


async def _look(
    client: ChatwootAdminClient, account_id: int, inboxes: list[dict[str, Any]]
) -> _Seen:
    seen = _Seen(inboxes=inboxes)

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


def _receiver_checks(
    seen: _Seen, settings: Settings, account_id: int
) -> tuple[list[Check], list[Receiver] | None]:
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
    return value if isinstance(value, str) and value else None


async def _private_check(receivers: list[Receiver], version: Version | None) -> list[Check]:
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


async def check_chatwoot(settings: Settings, *, timeout_s: float = 5.0) -> list[Check]:
    """Every Chatwoot check; see the module docstring."""
    assert settings.chatwoot_url
    token = settings.chatwoot_api_token.get_secret_value() if settings.chatwoot_api_token else ""
    secret = (
        settings.chatwoot_webhook_secret.get_secret_value()
        if settings.chatwoot_webhook_secret
        else None
    )
    shown = redact_url(settings.chatwoot_url)
    checks: list[Check] = []
    async with ChatwootAdminClient(
        settings.chatwoot_url, token or "unset", timeout_s=timeout_s, max_retries=0
    ) as client:
        started = time.perf_counter()
        reported: str | None = None
        try:
            reported = await client.server_version()
        except ChatwootError as exc:
            if exc.status is None:
                checks.append(
                    Check(
                        "chatwoot reachable",
                        "fail",
                        f"{shown}: {exc.message}; CHATWOOT_URL must be Chatwoot's base URL, "
                        "reachable from Sluice",
                    )
                )
                return checks
            checks.append(
                Check(
                    "chatwoot reachable",
                    "warn",
                    f"{shown} answered GET /api with {exc.status}: is CHATWOOT_URL Chatwoot's "
                    "base URL (no path)?",
                )
            )
        else:
            elapsed = (time.perf_counter() - started) * 1000
            checks.append(
                Check("chatwoot reachable", "pass", f"{shown}: GET /api in {elapsed:.0f} ms")
            )
        version = parse_version(reported)
        checks.append(version_check(version, reported))
        receivers: list[Receiver] | None = None
        if not token:
            checks.append(
                Check(
                    "chatwoot token",
                    "fail",
                    "CHATWOOT_API_TOKEN is not set: Sluice cannot post replies; use an "
                    "administrator's access token (Profile settings → Access Token)",
                )
            )
        else:
            more, receivers = await _token_and_account(client, settings, version)
            checks += more
        checks.append(signing_check(secret, version, receivers))
    return checks


async def _token_and_account(
    client: ChatwootAdminClient, settings: Settings, version: Version | None
) -> tuple[list[Check], list[Receiver] | None]:
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
        seen = await _look(client, account_id, inboxes)
    except ChatwootError as exc:
        checks.append(
            Check(
                "chatwoot receiver", "warn", f"could not list receivers: {exc.status} ({said(exc)})"
            )
        )
        return checks, None
    more, receivers = _receiver_checks(seen, settings, account_id)
    checks += more
    checks += await _private_check(receivers or [], version)
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
