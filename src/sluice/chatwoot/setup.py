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

This module runs the steps in order (Chatwoot's version, the token's account, then the
receiver); the pieces are :mod:`~sluice.chatwoot.setup_plan` (the options and the dry run),
:mod:`~sluice.chatwoot.setup_receivers` (creating or reusing the bot or webhook),
:mod:`~sluice.chatwoot.setup_advice` (what to set in Sluice's environment next),
:mod:`~sluice.chatwoot.setup_errors`, :mod:`~sluice.chatwoot.setup_output`, and
:mod:`~sluice.chatwoot.receivers` (what counts as a Sluice receiver, shared with ``sluice
validate``). The names callers import stay importable from here.
"""

from __future__ import annotations

from sluice.chatwoot.admin import ChatwootAdminClient
from sluice.chatwoot.errors import ChatwootError
from sluice.chatwoot.features import (
    PRIVATE_URLS_REFUSED,
    Version,
    format_version,
    parse_version,
)
from sluice.chatwoot.receivers import (
    NEEDED_EVENTS,
    RECEIVER_PATH,
    is_receiver_url,
    private_destination,
    same_url,
)
from sluice.chatwoot.setup_errors import ADMIN_TOKEN_FIX, SetupError, explain
from sluice.chatwoot.setup_output import Printer, named
from sluice.chatwoot.setup_plan import (
    BOT_DESCRIPTION,
    Mode,
    SetupOptions,
    print_plan,
    receiver_url,
)
from sluice.chatwoot.setup_receivers import (
    SetupContext,
    setup_account_webhook,
    setup_agent_bot,
)
from sluice.settings.config import redact_url

__all__ = [
    "ADMIN_TOKEN_FIX",
    "BOT_DESCRIPTION",
    "NEEDED_EVENTS",
    "RECEIVER_PATH",
    "Mode",
    "Printer",
    "SetupError",
    "SetupOptions",
    "explain",
    "is_receiver_url",
    "print_plan",
    "private_destination",
    "receiver_url",
    "run_setup",
    "same_url",
]


def _warn_private(out: Printer, url: str, private: bool | None, version: Version | None) -> None:
    """Warn when Chatwoot will refuse the receiver's address (SafeFetch, from 4.14)."""
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


async def _probe(client: ChatwootAdminClient, out: Printer) -> Version | None:
    """Chatwoot's version (``GET /api``), on which signing and the private-URL rule depend;
    None when it reports none. Only an unreachable Chatwoot stops the setup here."""
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
            listed = ", ".join(named(a) for a in accounts) or "none"
            raise SetupError(
                f"no account given, and the token's user is in {len(accounts)} accounts ({listed})",
                "pass --account-id or set CHATWOOT_ACCOUNT_ID",
            )
        account_id = int(accounts[0]["id"])
    else:
        account_id = options.account_id
    membership = next((a for a in accounts if a.get("id") == account_id), None)
    if membership is None:
        listed = ", ".join(named(a) for a in accounts) or "none"
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
    out.ok(f"token of {who}, administrator of account {named(membership)}")
    return account_id


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
            ctx = SetupContext(client, account_id, url, version, options)
            if options.mode == "agent-bot":
                await setup_agent_bot(ctx, out)
            else:
                await setup_account_webhook(ctx, out)
    except SetupError as exc:
        out.error(exc)
        return 1
    return 0
