"""``sluice chatwoot setup``: register Sluice with a Chatwoot instance through its API.

Two ways for Chatwoot to deliver messages to Sluice (docs/chatwoot.md says which to choose):

- ``agent-bot``: an agent bot whose ``outgoing_url`` is Sluice's ``/webhooks/chatwoot``,
  linked to the chosen inboxes (``set_agent_bot``). Chatwoot retries its deliveries on 429
  and 500, and the pending/open handoff is Chatwoot's own.
- ``account-webhook``: an account webhook subscribed to :data:`NEEDED_EVENTS`. Sent once and
  never retried; Sluice's durable intake spool is what keeps it safe.

Idempotent: a bot or webhook already sending to the same URL is reused (a webhook missing
some of the events gets them added), an inbox already linked is left alone. Every step is
printed; ``dry_run`` prints the calls without sending any. Errors are :class:`SetupError`
(what went wrong, and what to do), never a traceback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sluice.chatwoot.admin import ChatwootAdminClient, refusal, said
from sluice.chatwoot.client import ChatwootError
from sluice.chatwoot.features import (
    ACCOUNT_WEBHOOKS_SIGNED,
    AGENT_BOTS_SIGNED,
    PRIVATE_URLS_REFUSED,
    Version,
    format_version,
    parse_version,
)
from sluice.config import redact_url

Mode = Literal["agent-bot", "account-webhook"]
RECEIVER_PATH: Final = "/webhooks/chatwoot"
# What Sluice's intake acts on (docs/chatwoot.md); all in ALLOWED_WEBHOOK_EVENTS (facts §9).
NEEDED_EVENTS: Final = (
    "message_created",
    "message_updated",
    "conversation_created",
    "conversation_status_changed",
    "conversation_updated",
)
BOT_DESCRIPTION: Final = "Sluice: answers customer messages within the SLA"
ADMIN_TOKEN_FIX: Final = (
    "use the access token of an administrator of the account: in Chatwoot, avatar → "
    "Profile settings → Access Token (--token or CHATWOOT_API_TOKEN)"
)


class SetupError(Exception):
    """Setup cannot go on: ``problem`` says what happened, ``fix`` what to do."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class SetupOptions:
    mode: Mode
    chatwoot_url: str
    token: str | None
    account_id: int | None
    public_url: str
    inboxes: tuple[int, ...] = ()
    name: str = "Sluice"
    dry_run: bool = False


def receiver_url(public_url: str) -> str:
    """Sluice's webhook URL from where Chatwoot reaches Sluice: ``https://sluice.example.com``
    becomes ``https://sluice.example.com/webhooks/chatwoot``; a URL already ending in that
    path is kept."""
    text = public_url.strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise SetupError(
            f"--public-url {redact_url(text)!r} is not an http(s) URL",
            "give the address Chatwoot reaches Sluice at, e.g. https://sluice.example.com",
        )
    if parts.fragment:
        raise SetupError("--public-url must not carry a #fragment", "drop the part from '#' on")
    path = parts.path.rstrip("/")
    if not path.endswith(RECEIVER_PATH):
        path += RECEIVER_PATH
    return urlunsplit((parts.scheme.lower(), parts.netloc, path, parts.query, ""))


def same_url(a: object, b: str) -> bool:
    """The same receiver: scheme and host compared case-insensitively, a trailing slash of
    the path ignored."""
    if not isinstance(a, str):
        return False

    def key(url: str) -> tuple[str, str, str, str]:
        parts = urlsplit(url.strip())
        return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query

    return key(a) == key(b)


def is_receiver_url(url: object) -> bool:
    """Whether ``url`` points at a Sluice intake (its path ends in /webhooks/chatwoot)."""
    return isinstance(url, str) and urlsplit(url.strip()).path.rstrip("/").endswith(RECEIVER_PATH)


def _private(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False


async def private_destination(url: str, *, resolve_timeout_s: float = 2.0) -> bool | None:
    """Whether ``url``'s host is a loopback, private or link-local address (literally, or as
    it resolves from here); None when the name does not resolve here."""
    host = (urlsplit(url).hostname or "").strip("[]")
    if _private(host):
        return True
    try:
        ipaddress.ip_address(host)
        return False  # a public literal address
    except ValueError:
        pass
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, None), resolve_timeout_s
        )
    except (OSError, TimeoutError):
        return None
    return any(_private(str(info[4][0])) for info in infos)


def explain(exc: ChatwootError, *, account_id: int | None, action: str) -> SetupError:
    """A Chatwoot error as a problem and what to do about it."""
    account = f"account {account_id}" if account_id is not None else "the account"
    if exc.status is None:
        return SetupError(
            f"cannot reach Chatwoot ({exc.message})",
            "check --chatwoot-url / CHATWOOT_URL: the address you open Chatwoot at in a "
            "browser (https://chat.example.com), reachable from this machine",
        )
    kind = refusal(exc)
    if kind == "invalid_token":
        return SetupError(f"Chatwoot refused the token (401: {said(exc)})", ADMIN_TOKEN_FIX)
    if kind == "bot_token":
        return SetupError(
            f"the token is an agent bot's, which may not {action} (401: {said(exc)})",
            ADMIN_TOKEN_FIX,
        )
    if kind == "not_member":
        return SetupError(
            f"the token's user is not a member of {account} (401: {said(exc)})",
            "check --account-id / CHATWOOT_ACCOUNT_ID: the number after /app/accounts/ in "
            "the dashboard's address",
        )
    if kind == "not_admin":
        return SetupError(
            f"the token's user may not {action} in {account} ({exc.status}: {said(exc)})",
            ADMIN_TOKEN_FIX + "; Settings → Agents shows each person's role",
        )
    if exc.status == 401:
        return SetupError(f"Chatwoot answered 401 ({said(exc)})", ADMIN_TOKEN_FIX)
    if exc.status == 404:
        return SetupError(
            f"Chatwoot answered 404 to {action}: {account} does not exist ({said(exc)})",
            "check --account-id / CHATWOOT_ACCOUNT_ID (the number after /app/accounts/ in the "
            "dashboard's address) and that --chatwoot-url is Chatwoot's base URL",
        )
    if exc.status == 422:
        return SetupError(
            f"Chatwoot rejected the request to {action} (422: {said(exc)})",
            "check --public-url (an http(s) URL) and --name; the message above is Chatwoot's",
        )
    return SetupError(
        f"Chatwoot answered {exc.status} to {action} ({said(exc)})",
        "look at Chatwoot's logs, then run the command again (it is idempotent)",
    )


class Printer:
    """The command's readable output (Rich). Texts are printed as they are (never read as
    markup: they carry names and URLs from Chatwoot); values meant to be copied are never
    wrapped."""

    def __init__(self, console: Console, errors: Console | None = None) -> None:
        self.console = console
        self.errors = errors or console

    def title(self, text: str) -> None:
        self.console.print(f"[bold]{escape(text)}[/bold]", highlight=False)

    def ok(self, text: str) -> None:
        self.console.print(f"[green]✔[/green] {escape(text)}", highlight=False)

    def warn(self, text: str) -> None:
        self.console.print(f"[yellow]![/yellow] {escape(text)}", highlight=False)

    def info(self, text: str) -> None:
        self.console.print(f"  {escape(text)}", highlight=False)

    def value(self, text: str) -> None:
        self.console.print(f"    {escape(text)}", soft_wrap=True, highlight=False)

    def error(self, exc: SetupError) -> None:
        self.errors.print(f"[red]✘ {escape(exc.problem)}[/red]", highlight=False)
        self.errors.print(f"  [bold]what to do:[/bold] {escape(exc.fix)}", highlight=False)


def _name(item: dict[str, Any]) -> str:
    name = item.get("name")
    return f"{item.get('id')} ({name})" if name else str(item.get("id"))


def _warn_private(out: Printer, url: str, private: bool | None, version: Version | None) -> None:
    if not private:
        return
    if version is not None and version < PRIVATE_URLS_REFUSED:
        return
    when = (
        f"Chatwoot {format_version(version)} refuses"
        if version is not None
        else "Chatwoot 4.14 and later refuse"
    )
    out.warn(
        f"{redact_url(url)} is a private or loopback address: {when} such webhook URLs "
        '("has no public ip addresses") unless SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true is set '
        "in Chatwoot's environment; otherwise give a public --public-url"
    )


# --- dry run ---------------------------------------------------------------------------------


def print_plan(options: SetupOptions, url: str, out: Printer) -> None:
    """The calls a real run would make, in order; nothing is sent."""
    url = redact_url(url)  # as everywhere: credentials in a URL are not shown
    account = str(options.account_id) if options.account_id is not None else "{account_id}"
    base = f"/api/v1/accounts/{account}"
    rows: list[tuple[str, str, str]] = [
        ("GET", "/api", "read Chatwoot's version (signing and the private-URL rule depend on it)"),
        (
            "GET",
            "/api/v1/profile",
            "check the token: a user who administers account "
            + (account if options.account_id is not None else "(its only account)"),
        ),
    ]
    if options.mode == "agent-bot":
        body = {"name": options.name, "description": BOT_DESCRIPTION, "outgoing_url": url}
        rows += [
            ("GET", f"{base}/inboxes", "check that the inboxes exist"),
            ("GET", f"{base}/agent_bots", f"look for an agent bot whose outgoing_url is {url}"),
            ("POST", f"{base}/agent_bots", f"if there is none: {json.dumps(body)}"),
        ]
        for inbox in options.inboxes:
            rows += [
                ("GET", f"{base}/inboxes/{inbox}/agent_bot", f"which bot inbox {inbox} has"),
                (
                    "POST",
                    f"{base}/inboxes/{inbox}/set_agent_bot",
                    'unless it has that bot already: {"agent_bot": <bot id>}',
                ),
            ]
        rows.append(("GET", f"{base}/webhooks", "warn if an account webhook sends there too"))
    else:
        webhook = {"url": url, "subscriptions": list(NEEDED_EVENTS), "name": options.name}
        rows += [
            ("GET", f"{base}/webhooks", f"look for the webhook of {url}"),
            ("POST", f"{base}/webhooks", f"if there is none: {json.dumps({'webhook': webhook})}"),
            (
                "PATCH",
                f"{base}/webhooks/<id>",
                "only if it exists without some of the events: the missing ones are added",
            ),
            ("GET", f"{base}/agent_bots", "warn if an agent bot sends there too"),
            ("GET", f"{base}/inboxes", "then GET …/inboxes/<id>/agent_bot for each inbox:"),
            ("", "", "which have an agent bot (whether to set CHATWOOT_ANSWER_OPEN)"),
        ]
    out.title("Dry run: nothing is sent.")
    out.info(
        f"Against {redact_url(options.chatwoot_url)}, each call with the header "
        "api_access_token: *** (the token), a real run would make:"
    )
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("call", no_wrap=True)
    table.add_column("why", overflow="fold")
    for number, (method, path, why) in enumerate(rows, 1):
        table.add_row(str(number), escape(f"{method} {path}"), escape(why))
    out.console.print(table)


# --- the real run ----------------------------------------------------------------------------


@dataclass
class _Context:
    client: ChatwootAdminClient
    account_id: int
    url: str
    version: Version | None
    options: SetupOptions


async def _probe(client: ChatwootAdminClient, out: Printer) -> Version | None:
    try:
        reported = await client.server_version()
    except ChatwootError as exc:
        if exc.status is None:
            raise explain(exc, account_id=None, action="answer GET /api") from None
        out.warn(
            f"Chatwoot answered GET /api with {exc.status}: its version is unknown "
            "(is --chatwoot-url Chatwoot's base URL, not a page of it?)"
        )
        return None
    version = parse_version(reported)
    if version is None:
        out.warn("Chatwoot is reachable but GET /api reports no version: version unknown")
    else:
        out.ok(f"Chatwoot reachable, version {reported}")
    return version


async def _account(client: ChatwootAdminClient, options: SetupOptions, out: Printer) -> int:
    """The account to set up, after checking the token is an administrator's there."""
    try:
        profile = await client.profile()
    except ChatwootError as exc:
        if exc.status == 404:
            raise SetupError(
                "GET /api/v1/profile answered 404: this is not Chatwoot's API",
                "--chatwoot-url / CHATWOOT_URL must be Chatwoot's base URL, e.g. "
                "https://chat.example.com (no path)",
            ) from None
        raise explain(exc, account_id=options.account_id, action="read its profile") from None
    accounts = [a for a in profile.get("accounts") or [] if isinstance(a, dict)]
    who = str(profile.get("name") or f"user {profile.get('id')}")
    if options.account_id is None:
        if len(accounts) != 1:
            listed = ", ".join(_name(a) for a in accounts) or "none"
            raise SetupError(
                f"no account given, and the token's user is in {len(accounts)} accounts ({listed})",
                "pass --account-id or set CHATWOOT_ACCOUNT_ID",
            )
        account_id = int(accounts[0]["id"])
    else:
        account_id = options.account_id
    membership = next((a for a in accounts if a.get("id") == account_id), None)
    if membership is None:
        listed = ", ".join(_name(a) for a in accounts) or "none"
        raise SetupError(
            f"the token's user ({who}) is not a member of account {account_id}; its accounts: "
            f"{listed}",
            "check --account-id / CHATWOOT_ACCOUNT_ID: the number after /app/accounts/ in the "
            "dashboard's address",
        )
    role = membership.get("role")
    if role != "administrator":
        raise SetupError(
            f"the token's user ({who}) is {str(role)!r} in account {account_id}: "
            "creating agent bots and webhooks needs an administrator",
            ADMIN_TOKEN_FIX,
        )
    out.ok(f"token of {who}, administrator of account {_name(membership)}")
    return account_id


async def _inboxes(ctx: _Context) -> dict[int, dict[str, Any]]:
    try:
        inboxes = await ctx.client.list_inboxes(ctx.account_id)
    except ChatwootError as exc:
        raise explain(exc, account_id=ctx.account_id, action="list its inboxes") from None
    by_id = {int(i["id"]): i for i in inboxes if isinstance(i.get("id"), int)}
    unknown = [i for i in ctx.options.inboxes if i not in by_id]
    if unknown:
        listed = ", ".join(_name(i) for i in by_id.values()) or "none"
        raise SetupError(
            f"no inbox {', '.join(map(str, unknown))} in account {ctx.account_id}; its inboxes: "
            f"{listed}",
            "pass --inbox with one of these ids (Settings → Inboxes; the id is in the address)",
        )
    return by_id


async def _agent_bot(ctx: _Context, out: Printer) -> None:
    client, account_id, url = ctx.client, ctx.account_id, ctx.url
    inboxes = await _inboxes(ctx)
    try:
        bots = await client.list_agent_bots(account_id)
    except ChatwootError as exc:
        raise explain(exc, account_id=account_id, action="list agent bots") from None
    same = sorted((b for b in bots if same_url(b.get("outgoing_url"), url)), key=_id_key)
    if same:
        bot = same[0]
        out.ok(f"reusing agent bot {_name(bot)}: it already sends to {redact_url(url)}")
        if len(same) > 1:
            others = ", ".join(_name(b) for b in same[1:])
            out.warn(f"agent bots {others} send there too: delete them (Settings → Bots)")
    else:
        try:
            bot = await client.create_agent_bot(
                account_id, name=ctx.options.name, outgoing_url=url, description=BOT_DESCRIPTION
            )
        except ChatwootError as exc:
            raise explain(exc, account_id=account_id, action="create an agent bot") from None
        out.ok(f"created agent bot {_name(bot)} with outgoing_url {redact_url(url)}")
    bot_id = bot.get("id")
    if not isinstance(bot_id, int):
        raise SetupError("Chatwoot's agent bot has no id", "look at Chatwoot's logs")
    for inbox_id in ctx.options.inboxes:
        inbox = _name(inboxes[inbox_id])
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
            out.ok(f"linked inbox {inbox} to the bot, replacing agent bot {_name(current)}")
        else:
            out.ok(f"linked inbox {inbox} to the bot")
    if not ctx.options.inboxes:
        listed = ", ".join(_name(i) for i in inboxes.values()) or "none"
        out.warn(
            "no --inbox given: the bot receives nothing until it is linked to an inbox "
            f"(run again with --inbox ID, or Settings → Inboxes → Bot configuration); "
            f"inboxes: {listed}"
        )
    await _also(ctx, out, "account-webhook")
    _bot_next_steps(ctx, bot, out)


def _id_key(item: dict[str, Any]) -> int:
    value = item.get("id")
    return value if isinstance(value, int) else 1 << 62


def _next_steps(out: Printer, settings: list[str], notes: list[str]) -> None:
    """The variables to set in Sluice's environment (unwrapped, to copy), then why."""
    out.title("Next, set in Sluice's environment:")
    for line in settings:
        out.value(line)
    for note in notes:
        out.info(note)


def _secret_advice(
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


def _bot_next_steps(ctx: _Context, bot: dict[str, Any], out: Printer) -> None:
    """Where the bot's secret and access token are (facts §9): in its JSON for
    administrators in newer versions (secret from 4.13, #13892; access_token since #14830),
    else on its settings page."""
    page = f"Settings → Bots → {bot.get('name') or ctx.options.name}"
    settings, notes = _secret_advice(
        bot.get("secret"), ctx.version, "agent bot", AGENT_BOTS_SIGNED, page
    )
    settings += [f"CHATWOOT_AGENT_BOT_ID={bot.get('id')}", f"CHATWOOT_ACCOUNT_ID={ctx.account_id}"]
    notes.append(
        "CHATWOOT_AGENT_BOT_ID posts replies as the bot with a user token; keep "
        "CHATWOOT_API_TOKEN a user's (an administrator's): a bot token cannot list messages "
        "or agents"
    )
    in_json = (
        f"in its JSON (GET /api/v1/accounts/{ctx.account_id}/agent_bots, administrators) and "
        if "access_token" in bot
        else ""
    )
    notes.append(f"the bot's own access token is {in_json}on {page}")
    _next_steps(out, settings, notes)


async def _answer_open_advice(ctx: _Context) -> tuple[list[str], list[str]]:
    """CHATWOOT_ANSWER_OPEN for an account webhook: conversations of an inbox without an
    agent bot start open (facts §10), so Sluice must be told to answer open ones; in an
    inbox with a bot they start pending and open means a human has them."""
    try:
        inboxes = await ctx.client.list_inboxes(ctx.account_id)
        with_bot: list[str] = []
        without: list[str] = []
        for inbox in inboxes[:50]:
            if not isinstance(inbox.get("id"), int):
                continue
            bot = await ctx.client.inbox_agent_bot(ctx.account_id, inbox["id"])
            (with_bot if bot is not None else without).append(_name(inbox))
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


async def _account_webhook(ctx: _Context, out: Printer) -> None:
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
    settings, notes = _secret_advice(
        webhook.get("secret") or (existing or {}).get("secret"),
        ctx.version,
        "account webhook",
        ACCOUNT_WEBHOOKS_SIGNED,
        "Settings → Integrations → Webhooks",
    )
    settings.append(f"CHATWOOT_ACCOUNT_ID={account_id}")
    more_settings, more_notes = await _answer_open_advice(ctx)
    notes.append(
        "account webhooks are sent once and never retried: Sluice's durable intake spool "
        "keeps each delivery it acknowledged"
    )
    _next_steps(out, settings + more_settings, notes + more_notes)


async def _also(ctx: _Context, out: Printer, other: Mode) -> None:
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
            f"{what} {_name(hit)} sends to the same URL: Chatwoot then delivers every message "
            "twice (Sluice drops the duplicate, but keep one of the two; docs/chatwoot.md)"
        )


async def run_setup(options: SetupOptions, out: Printer) -> int:
    """Run (or, with ``dry_run``, print) the setup; the exit code (1 on any error)."""
    try:
        url = receiver_url(options.public_url)
        if options.dry_run:
            print_plan(options, url, out)
            _warn_private(out, url, await private_destination(url), None)
            return 0
        if not options.token:
            raise SetupError(
                "no Chatwoot token",
                "pass --token or set CHATWOOT_API_TOKEN to an administrator's access token "
                "(avatar → Profile settings → Access Token)",
            )
        out.title(
            f"Registering Sluice ({options.mode}) with Chatwoot at "
            f"{redact_url(options.chatwoot_url)}"
        )
        async with ChatwootAdminClient(
            options.chatwoot_url, options.token, timeout_s=10, max_retries=2
        ) as client:
            version = await _probe(client, out)
            account_id = await _account(client, options, out)
            _warn_private(out, url, await private_destination(url), version)
            ctx = _Context(client, account_id, url, version, options)
            if options.mode == "agent-bot":
                await _agent_bot(ctx, out)
            else:
                await _account_webhook(ctx, out)
    except SetupError as exc:
        out.error(exc)
        return 1
    return 0
