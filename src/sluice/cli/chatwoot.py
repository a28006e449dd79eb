"""`sluice chatwoot setup`: register Sluice with a Chatwoot instance, so that an operator
does not click through Chatwoot's settings (and get an event subscription wrong).

Two ways in, chosen with ``--mode`` (docs/chatwoot.md says which to pick): an agent bot
linked to inboxes, or an account webhook. The work is done by
:mod:`sluice.chatwoot.setup`; this module is the command line around it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from sluice.cli.common import console, err, run_async
from sluice.cli.help import SluiceCommand, SluiceGroup

group = typer.Typer(
    cls=SluiceGroup,
    help="Chatwoot: register Sluice with a Chatwoot instance.",
    no_args_is_help=True,
)


class SetupMode(StrEnum):
    agent_bot = "agent-bot"
    account_webhook = "account-webhook"


@group.command("setup", cls=SluiceCommand)
def chatwoot_setup(
    mode: Annotated[
        SetupMode,
        typer.Option(
            help="agent-bot: an agent bot linked to --inbox (Chatwoot retries it, the "
            "pending/open handoff is Chatwoot's); account-webhook: an account webhook for every "
            "inbox (sent once; Sluice's spool keeps it safe). docs/chatwoot.md says which."
        ),
    ],
    public_url: Annotated[
        str,
        typer.Option(
            help="Where Chatwoot reaches Sluice, e.g. https://sluice.example.com "
            "(/webhooks/chatwoot is added)."
        ),
    ],
    chatwoot_url: Annotated[
        str | None, typer.Option(envvar="CHATWOOT_URL", help="Chatwoot's base URL.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="CHATWOOT_API_TOKEN",
            show_default=False,
            help="An administrator's access token (Profile settings → Access Token).",
        ),
    ] = None,
    account_id: Annotated[
        int | None,
        typer.Option(
            envvar="CHATWOOT_ACCOUNT_ID",
            min=1,
            help="Account id (the number after /app/accounts/); default: the token's only one.",
        ),
    ] = None,
    inbox: Annotated[
        list[int] | None,
        typer.Option(
            "--inbox", min=1, help="Inbox id to link the bot to; repeat for several (agent-bot)."
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="Name of the agent bot or webhook.")] = "Sluice",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the calls it would make; send none.")
    ] = False,
) -> None:
    """Register Sluice with Chatwoot: an agent bot linked to inboxes, or an account webhook
    subscribed to the events Sluice needs. Idempotent; exit 1 on any error."""
    from sluice.chatwoot.setup import Printer, SetupOptions, run_setup

    if not chatwoot_url:
        err.print("[red]no Chatwoot URL:[/red] pass --chatwoot-url or set CHATWOOT_URL")
        raise typer.Exit(2)
    options = SetupOptions(
        mode="agent-bot" if mode is SetupMode.agent_bot else "account-webhook",
        chatwoot_url=chatwoot_url,
        token=token,
        account_id=account_id,
        public_url=public_url,
        inboxes=tuple(dict.fromkeys(inbox or ())),
        name=name,
        dry_run=dry_run,
    )
    code = run_async(lambda: run_setup(options, Printer(console, err)))
    if code:
        raise typer.Exit(code)
