"""`sluice serve`: the HTTP API alone, and what every command that serves the API shares
with it (the ``--host``/``--port`` options, the address check, the announcement).

The address is checked before anything starts: without SLUICE_ADMIN_TOKEN the API may only
listen on loopback, because its admin routes would otherwise be open to the network.
"""

from __future__ import annotations

from typing import Annotated

import typer

from sluice.cli.common import (
    err,
    load_settings_or_exit,
    redis_for,
    run_async,
    stop_event,
    traced,
)
from sluice.settings.config import Settings

HostOpt = Annotated[str | None, typer.Option(help="API address (default SLUICE_API_HOST).")]
PortOpt = Annotated[int | None, typer.Option(help="API port (default SLUICE_API_PORT).")]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=256,
        help="API processes on the one port (default SLUICE_API_WORKERS, else one per core).",
    ),
]


def api_address(settings: Settings, host: str | None, port: int | None) -> tuple[str, int]:
    """The address to serve on, or exit 2 if it would expose a tokenless admin API."""
    from sluice.api.auth import InsecureBindError, check_bind_address

    address = (host or settings.api_host, settings.api_port if port is None else port)
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    try:
        check_bind_address(address[0], token)
    except InsecureBindError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    return address


def announce(base: str) -> None:
    """Where the running system answers: what an operator opens next."""
    err.print(f"API:       [bold]{base}[/bold]")
    err.print(f"health:    {base}/api/admin/migration-status")
    err.print(f"metrics:   {base}/metrics")
    err.print(f"dashboard: [bold]{base}/dashboard[/bold]")


def serve(host: HostOpt = None, port: PortOpt = None, workers: WorkersOpt = None) -> None:
    """Run the HTTP API: the Chatwoot webhook, health document, admin controls, metrics.
    Several processes (--workers) share the port; what they share lives in Redis."""
    settings = load_settings_or_exit()
    address = api_address(settings, host, port)
    if workers is None:
        from sluice.api.processes import default_workers

        workers = settings.api_workers or default_workers()
    if workers > 1:
        from sluice.api.processes import serve_processes

        with redis_for(settings) as (url, _):
            code = serve_processes(
                *address,
                workers,
                url,
                lambda base: err.print(
                    f"API listening on [bold]{base}[/bold] ({workers} processes; "
                    f"health: {base}/api/admin/migration-status)",
                    soft_wrap=True,
                ),
            )
        if code:
            raise typer.Exit(code)
        return
    with traced("sluice-api"), redis_for(settings) as (url, _):

        async def run_api() -> None:
            from sluice.api.factory import create_app
            from sluice.api.server import ApiServer

            server = ApiServer(create_app(settings, url), *address)
            stop = stop_event()
            base = await server.start()
            err.print(
                f"API listening on [bold]{base}[/bold] (health: {base}/api/admin/migration-status)"
            )
            await stop.wait()
            await server.stop()

        run_async(run_api)
