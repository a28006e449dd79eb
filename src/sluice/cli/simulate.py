"""`sluice simulate`: the Chatwoot simulator on its own, a faithful fake of the API subset
Sluice uses, to develop and try Sluice without a Chatwoot instance.

The options that choose how the fake Chatwoot behaves are defined here and shared with
`sluice loadtest`, which runs the same simulator.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import typer

from sluice import logs
from sluice.cli.common import err, run_async

ChatwootVersionOpt = Annotated[
    str, typer.Option(help="Chatwoot version to behave as: 4.10 ... 4.16, or latest.")
]
ReceiverOpt = Annotated[str, typer.Option(help="Webhook receiver: account_webhook or agent_bot.")]


def simulate(
    port: Annotated[int, typer.Option(help="Port of the fake Chatwoot API.")] = 3000,
    webhook_url: Annotated[
        str | None, typer.Option(help="Where to send webhooks (Sluice's /webhooks/chatwoot).")
    ] = None,
    webhook_secret: Annotated[
        str | None, typer.Option(envvar="CHATWOOT_WEBHOOK_SECRET", help="Sign webhooks.")
    ] = None,
    token: Annotated[str, typer.Option(envvar="CHATWOOT_API_TOKEN", help="API token.")] = (
        "sim-token"
    ),
    rate_429: Annotated[float, typer.Option(min=0, max=1, help="Injected 429 share.")] = 0.0,
    rate_500: Annotated[float, typer.Option(min=0, max=1, help="Injected 500 share.")] = 0.0,
    chatwoot_version: ChatwootVersionOpt = "latest",
    mode: ReceiverOpt = "account_webhook",
) -> None:
    """Run the Chatwoot simulator (a faithful fake of the API subset Sluice uses)."""
    from sluice.simulator import SimulatorConfig, run_simulator

    logs.configure("text")
    options: dict[str, Any] = {"chatwoot_version": chatwoot_version, "mode": mode}
    try:
        config = SimulatorConfig(
            api_token=token,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            rate_429=rate_429,
            rate_500=rate_500,
            **options,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    err.print(f"Chatwoot simulator on http://127.0.0.1:{port} (token from CHATWOOT_API_TOKEN)")
    with contextlib.suppress(KeyboardInterrupt):
        run_async(lambda: run_simulator(config, "127.0.0.1", port))
