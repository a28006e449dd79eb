"""`sluice loadtest`: many concurrent conversations through the Chatwoot simulator,
measured as customers see it (from a message to the first reply they receive).

The run is a check as well as a measurement: it exits 1 when a message got no reply or got
two. By default every part runs in processes of its own (the simulator, the customers, the
API as ``sluice serve --workers``, the workers as ``sluice worker --processes``) so the
instrument does not compete with the system for one core; ``--in-process`` runs them all
in this process. The customers and the measuring live in :mod:`sluice.loadtest`; this is the
command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sluice.cli.common import (
    ProcessesOpt,
    console,
    err,
    load_settings_or_exit,
    redis_for,
    run_async,
)
from sluice.cli.simulate import ChatwootVersionOpt, ReceiverOpt


def loadtest(
    conversations: Annotated[int, typer.Option(min=1)] = 200,
    rate: Annotated[float, typer.Option(min=0.1, help="Offered messages per second.")] = 30.0,
    duration: Annotated[float, typer.Option(min=1, help="Seconds of load.")] = 60.0,
    ramp_up: Annotated[
        float, typer.Option(min=0, help="Seconds over which the customers arrive.")
    ] = 5.0,
    broker_latency: Annotated[float, typer.Option(help="Template broker latency, ms.")] = 200.0,
    processes: ProcessesOpt = 1,
    api_processes: Annotated[
        int, typer.Option(min=1, help="API processes (sluice serve --workers).")
    ] = 2,
    customer_processes: Annotated[
        int, typer.Option(min=1, help="Processes the customers are spread over.")
    ] = 1,
    in_process: Annotated[
        bool,
        typer.Option(
            "--in-process",
            help="Run the simulator, customers, API and a worker in this one process.",
        ),
    ] = False,
    chatwoot_429: Annotated[float, typer.Option(min=0, max=1)] = 0.0,
    chatwoot_500: Annotated[float, typer.Option(min=0, max=1)] = 0.0,
    chatwoot_rate_limit: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Chatwoot's RACK_ATTACK_LIMIT (requests/min per IP); default: sized to --rate.",
        ),
    ] = None,
    chatwoot_sidekiq_threads: Annotated[
        int | None,
        typer.Option(min=1, help="Chatwoot's webhook delivery threads; default: sized to --rate."),
    ] = None,
    chatwoot_version: ChatwootVersionOpt = "latest",
    mode: ReceiverOpt = "account_webhook",
    bot_token: Annotated[
        bool, typer.Option("--bot-token", help="Give Sluice the agent bot's own token.")
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
) -> None:
    """Many concurrent conversations through the simulator, measured as customers see it."""
    from sluice.loadtest import (
        LoadConfig,
        PartFailed,
        parse_mode,
        report_table,
        run_loadtest,
        run_loadtest_processes,
        write_json,
    )

    settings = load_settings_or_exit(quiet=True)
    try:
        cfg = LoadConfig(
            conversations=conversations,
            rate=rate,
            duration_s=duration,
            ramp_up_s=min(ramp_up, duration),
            broker_latency_ms=broker_latency,
            processes=processes,
            chatwoot_429_rate=chatwoot_429,
            chatwoot_500_rate=chatwoot_500,
            chatwoot_rate_limit_per_min=chatwoot_rate_limit,
            chatwoot_sidekiq_threads=chatwoot_sidekiq_threads,
            chatwoot_version=chatwoot_version,
            mode=parse_mode(mode),
            api_token_kind="bot" if bot_token else "user_admin",
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with redis_for(settings) as (url, _):
        if in_process:
            report = run_async(lambda: run_loadtest(settings, url, cfg, console))
        else:
            try:
                report = run_async(
                    lambda: run_loadtest_processes(
                        settings,
                        url,
                        cfg,
                        console,
                        api_processes=api_processes,
                        customer_processes=customer_processes,
                    )
                )
            except PartFailed as exc:
                err.print(f"[red]load test failed:[/] {exc}")
                raise typer.Exit(1) from None
    console.print(report_table(report))
    if json_out is not None:
        write_json(report, json_out)
        console.print(f"report written to {json_out}")
    if report["missing"] or report["duplicate_replies"] or report.get("customer_errors"):
        raise typer.Exit(1)
