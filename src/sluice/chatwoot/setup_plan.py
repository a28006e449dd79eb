"""What ``sluice chatwoot setup`` is asked to do: its options, the receiver URL they give,
and for a dry run the calls a real run would make.

The dry run sends nothing: it lists, in order, the calls to Chatwoot's API (and why each),
so an operator can review them, or make them by hand, before giving Sluice an
administrator's token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit, urlunsplit

from rich.markup import escape
from rich.table import Table

from sluice.chatwoot.receivers import NEEDED_EVENTS, RECEIVER_PATH
from sluice.chatwoot.setup_errors import SetupError
from sluice.chatwoot.setup_output import Printer
from sluice.settings.config import redact_url

Mode = Literal["agent-bot", "account-webhook"]
BOT_DESCRIPTION: Final = "Sluice: answers customer messages within the SLA"


@dataclass(frozen=True)
class SetupOptions:
    """The command line: which receiver, for which Chatwoot, account and inboxes."""

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
