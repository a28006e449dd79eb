"""The `sluice` command line: run the system, run workers, operate a queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from sluice import logs
from sluice.app import DEFAULT_HANDLER, Runtime, build_worker, import_handler, open_runtime
from sluice.config import ConfigError, Settings, load_settings
from sluice.redis.embedded import EmbeddedRedis, EmbeddedRedisError, resolve_redis_url
from sluice.worker import registry
from sluice.worker.runtime import Handler
from sluice.worker.supervisor import Supervisor, child_env

app = typer.Typer(
    help="Sluice: every customer chat message answered within its SLA.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")

HandlerOpt = Annotated[str, typer.Option(help="Job handler as package.module:function.")]
ProcessesOpt = Annotated[int, typer.Option(min=1, help="Worker processes to run.")]
# The fake Chatwoot's behaviour, for `simulate` and `loadtest` alike.
ChatwootVersionOpt = Annotated[
    str, typer.Option(help="Chatwoot version to behave as: 4.10 ... 4.16, or latest.")
]
ReceiverOpt = Annotated[str, typer.Option(help="Webhook receiver: account_webhook or agent_bot.")]


def _settings(*, quiet: bool = False) -> Settings:
    """Load settings or exit 2 naming the bad variable. Operating commands are ``quiet``:
    their output is the answer, not the process's configuration."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    logs.configure(settings.log_format, logging.WARNING if quiet else logging.INFO)
    return settings


@contextlib.contextmanager
def _redis(settings: Settings) -> Iterator[tuple[str, EmbeddedRedis | None]]:
    """REDIS_URL, or a private embedded server started here (main thread) and stopped on
    exit; it also dies with this process if it is killed."""
    try:
        url, server = resolve_redis_url(settings)
    except EmbeddedRedisError as exc:
        err.print(f"[red]no Redis:[/red] {exc}")
        raise typer.Exit(2) from None
    if server is not None:
        err.print(f"embedded Redis at [bold]{url}[/bold] (set REDIS_URL to use your own)")
    try:
        yield url, server
    finally:
        if server is not None:
            server.stop()


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_fn()

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:
        return asyncio.run(main())


def _with_runtime(settings: Settings, url: str, fn: Callable[[Runtime], Awaitable[T]]) -> T:
    async def go() -> T:
        async with open_runtime(settings, url) as runtime:
            return await fn(runtime)

    return _run(go)


@app.command()
def worker(
    processes: ProcessesOpt = 1,
    handler: HandlerOpt = DEFAULT_HANDLER,
) -> None:
    """Run worker processes for the queue until SIGTERM / Ctrl-C (default handler: the
    Chatwoot reply pipeline)."""
    settings = _settings()
    _check_handler(handler)
    with _redis(settings) as (url, _):
        if processes > 1:
            raise typer.Exit(Supervisor(processes, ["--handler", handler], child_env(url)).run())

        async def work(runtime: Runtime) -> None:
            service = _monitoring(runtime)
            job_handler, close = _handler(runtime, handler)
            try:
                await build_worker(runtime, job_handler, batch_size=_batch(runtime, handler)).run()
            finally:
                await close()
                await service.stop()

        _with_runtime(settings, url, work)


def _check_handler(handler: str) -> None:
    if handler == DEFAULT_HANDLER:
        return
    try:
        import_handler(handler)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _handler(runtime: Runtime, spec: str) -> tuple[Handler, Callable[[], Awaitable[None]]]:
    """The job handler and what closes it: the reply pipeline, or an imported function."""
    if spec != DEFAULT_HANDLER:
        return import_handler(spec), _noop
    from sluice.system import build_pipeline

    try:
        pipeline, client = build_pipeline(runtime)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    return pipeline, client.aclose


async def _noop() -> None:
    return None


def _batch(runtime: Runtime, handler: str) -> int:
    return runtime.settings.burst_max if handler == DEFAULT_HANDLER else 1


HostOpt = Annotated[str | None, typer.Option(help="API address (default SLUICE_API_HOST).")]
PortOpt = Annotated[int | None, typer.Option(help="API port (default SLUICE_API_PORT).")]


def _api_address(settings: Settings, host: str | None, port: int | None) -> tuple[str, int]:
    from sluice.api.auth import InsecureBindError, check_bind_address

    address = (host or settings.api_host, settings.api_port if port is None else port)
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    try:
        check_bind_address(address[0], token)
    except InsecureBindError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    return address


@app.command()
def serve(host: HostOpt = None, port: PortOpt = None) -> None:
    """Run the HTTP API: health document, admin controls, metrics."""
    settings = _settings()
    address = _api_address(settings, host, port)
    with _redis(settings) as (url, _):

        async def run_api() -> None:
            from sluice.api.app import create_app
            from sluice.api.server import ApiServer

            server = ApiServer(create_app(settings, url), *address)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            base = await server.start()
            err.print(
                f"API listening on [bold]{base}[/bold] (health: {base}/api/admin/migration-status)"
            )
            await stop.wait()
            await server.stop()

        _run(run_api)


@app.command()
def up(
    demo: Annotated[
        bool, typer.Option(help="Run a Chatwoot simulator with demo customers and show progress.")
    ] = False,
    processes: ProcessesOpt = 1,
    handler: HandlerOpt = DEFAULT_HANDLER,
    conversations: Annotated[int, typer.Option(min=1, help="Demo conversations.")] = 50,
    rate: Annotated[float, typer.Option(min=0.1, help="Demo messages per second.")] = 5.0,
    duration: Annotated[float, typer.Option(min=0, help="Demo seconds (0 = until Ctrl-C).")] = 0,
    host: HostOpt = None,
    port: PortOpt = None,
) -> None:
    """Run the whole system: Redis (embedded unless REDIS_URL is set), the API with the
    Chatwoot webhook, and workers. `--demo` adds a Chatwoot simulator and customers."""
    settings = _settings()
    address = _api_address(settings, host, port)
    _check_handler(handler)
    with _redis(settings) as (url, _):
        if demo:
            _run(lambda: _demo(settings, url, address, conversations, rate, duration, processes))
            return
        supervisor = _spawn_supervisor(processes, handler, url) if processes > 1 else None

        async def system(runtime: Runtime) -> None:
            from sluice.api.app import create_app
            from sluice.api.server import ApiServer

            stop = _stop_event()
            api = ApiServer(create_app(settings, url), *address)
            base = await api.start()
            _announce(base)
            worker = close = None
            task = None
            if supervisor is None:
                job_handler, close = _handler(runtime, handler)
                worker = build_worker(runtime, job_handler, batch_size=_batch(runtime, handler))
                worker.handle_signals = False
                task = asyncio.create_task(worker.run())
            err.print("running; Ctrl-C to stop")
            await stop.wait()
            if worker is not None and task is not None and close is not None:
                await worker.stop()
                await task
                await close()
            await api.stop()

        try:
            _with_runtime(settings, url, system)
        finally:
            if supervisor is not None:
                supervisor.send_signal(signal.SIGTERM)
                supervisor.wait(timeout=settings.shutdown_grace_s + 10)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _announce(base: str) -> None:
    err.print(f"API:       [bold]{base}[/bold]")
    err.print(f"health:    {base}/api/admin/migration-status")
    err.print(f"metrics:   {base}/metrics")
    err.print(f"dashboard: [bold]{base}/dashboard[/bold]")


async def _demo(
    settings: Settings,
    url: str,
    address: tuple[str, int],
    conversations: int,
    rate: float,
    duration: float,
    processes: int,
) -> None:
    """The simulator plays Chatwoot; demo customers write, wait for replies, write again."""
    from sluice.loadtest import LoadConfig, Tally, run_system_with_simulator, start_customers

    # The live table is the demo's output: per-job and access lines would tear it.
    for noisy in ("sluice.jobs", "uvicorn.error", "sluice.pipeline"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = LoadConfig(
        conversations=conversations,
        rate=rate,
        duration_s=duration,
        processes=processes,
        broker_latency_ms=150,
    )

    async def body(sim: Any, runtime: Runtime, api_url: str) -> dict[str, Any]:
        _announce(api_url)
        err.print(
            f"Chatwoot simulator: {sim.config.webhook_url and 'sending webhooks to'} "
            f"{sim.config.webhook_url}"
        )
        stop = _stop_event()
        tally = Tally()
        tasks: list[asyncio.Task[Any]] = [*start_customers(sim, cfg, tally, stop)]
        tasks.append(asyncio.create_task(_progress(runtime, stop, duration, tally)))
        if duration:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
            stop.set()
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return {}

    await run_system_with_simulator(
        settings, url, cfg, body, api_host=address[0], api_port=address[1]
    )


def _monitoring(runtime: Runtime) -> Any:
    """Every worker process is a candidate alert evaluator (one leads, by lease)."""
    from sluice.monitor.service import MonitoringService
    from sluice.monitor.snapshot import Monitor

    monitor = Monitor(
        runtime.queue,
        sla_objective=runtime.settings.sla_objective,
        rate_limit=runtime.settings.queue_rate_limit,
    )
    service = MonitoringService(monitor)
    service.start()
    return service


def _spawn_supervisor(processes: int, handler: str, url: str) -> Any:
    import subprocess

    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sluice",
            "worker",
            "--processes",
            str(processes),
            "--handler",
            handler,
        ],
        env=child_env(url),
    )


async def _progress(runtime: Runtime, stop: asyncio.Event, duration: float, tally: Any) -> None:
    """Live table of the queue and of the demo customers' replies."""
    last_completed, last_at = 0, time.monotonic()
    rate = 0.0
    with Live(console=console, refresh_per_second=2) as live:
        while not stop.is_set():
            counts = await runtime.queue.counts()
            workers = await registry.live_workers(runtime.queue.redis, runtime.queue.keys)
            now = time.monotonic()
            if now - last_at >= 1.0:
                rate = (counts["completed"] - last_completed) / (now - last_at)
                last_completed, last_at = counts["completed"], now
            table = _status_table(counts, workers, rate, runtime.redis.metrics().as_dict())
            p95 = tally.sla_ms.percentile(95)
            table.add_row("customer lines sent / replied", f"{tally.sent} / {tally.replied}")
            table.add_row("customer SLA p95", "-" if p95 is None else f"{p95 / 1000:.2f} s")
            live.update(table)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


def _status_table(
    counts: dict[str, Any],
    workers: list[dict[str, Any]],
    rate: float | None,
    pool: dict[str, Any] | None = None,
) -> Table:
    table = Table(title="Sluice", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in ("waiting", "active", "delayed", "completed", "dead", "ready_lanes"):
        table.add_row(name, str(counts[name]))
    table.add_row("paused", "yes" if counts["paused"] else "no")
    table.add_row("oldest waiting", f"{counts['oldest_waiting_age_ms'] / 1000:.1f} s")
    if rate is not None:
        table.add_row("completed / s", f"{rate:.1f}")
    slots = sum(w["slots"] for w in workers)
    busy = sum(w["utilization"] * w["slots"] for w in workers)
    table.add_row("workers / slots", f"{len(workers)} / {slots}")
    table.add_row("utilization", f"{busy / slots:.0%}" if slots else "-")
    if pool:
        table.add_row("pool in use / opened", f"{pool.get('in_use')} / {pool.get('opened')}")
    return table


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Counts, workers and utilization of the queue."""
    settings = _settings(quiet=True)
    _require_url(settings)

    async def read(runtime: Runtime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        counts = await runtime.queue.counts()
        workers = await registry.live_workers(runtime.queue.redis, runtime.queue.keys)
        return counts, workers

    counts, workers = _with_runtime(settings, str(settings.redis_url), read)
    if as_json:
        console.print_json(
            json.dumps({"queue": settings.queue, "counts": counts, "workers": workers})
        )
        return
    console.print(_status_table(counts, workers, None))
    if workers:
        table = Table(title="Workers", header_style="bold")
        for col in ("id", "slots", "busy", "utilization", "processed", "failed"):
            table.add_column(col)
        for w in workers:
            table.add_row(
                w["id"],
                str(w["slots"]),
                str(w["busy"]),
                f"{w['utilization']:.0%}",
                str(w["processed"]),
                str(w["failed"]),
            )
        console.print(table)


@app.command()
def pause() -> None:
    """Stop new job starts on every worker (running jobs finish)."""
    settings = _settings(quiet=True)
    _require_url(settings)
    changed = _with_runtime(settings, str(settings.redis_url), lambda rt: rt.queue.pause())
    console.print("paused" if changed else "already paused")


@app.command()
def resume() -> None:
    """Let workers start jobs again."""
    settings = _settings(quiet=True)
    _require_url(settings)
    changed = _with_runtime(settings, str(settings.redis_url), lambda rt: rt.queue.resume())
    console.print("resumed" if changed else "was not paused")


@app.command()
def drain(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove every waiting and delayed job (running jobs finish)."""
    settings = _settings(quiet=True)
    _require_url(settings)
    if not yes:
        waiting = _with_runtime(settings, str(settings.redis_url), lambda rt: rt.queue.counts())
        total = waiting["waiting"] + waiting["delayed"]
        typer.confirm(f"Remove {total} waiting jobs from {settings.queue!r}?", abort=True)
    removed = _with_runtime(settings, str(settings.redis_url), lambda rt: rt.queue.drain())
    console.print(f"removed {removed} jobs")


@app.command()
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
        _run(lambda: run_simulator(config, "127.0.0.1", port))


chatwoot_cli = typer.Typer(
    help="Chatwoot: register Sluice with a Chatwoot instance.", no_args_is_help=True
)
app.add_typer(chatwoot_cli, name="chatwoot")


class SetupMode(StrEnum):
    agent_bot = "agent-bot"
    account_webhook = "account-webhook"


@chatwoot_cli.command("setup")
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
    code = _run(lambda: run_setup(options, Printer(console, err)))
    if code:
        raise typer.Exit(code)


@app.command()
def loadtest(
    conversations: Annotated[int, typer.Option(min=1)] = 200,
    rate: Annotated[float, typer.Option(min=0.1, help="Offered messages per second.")] = 30.0,
    duration: Annotated[float, typer.Option(min=1, help="Seconds of load.")] = 60.0,
    broker_latency: Annotated[float, typer.Option(help="Template broker latency, ms.")] = 200.0,
    processes: ProcessesOpt = 1,
    chatwoot_429: Annotated[float, typer.Option(min=0, max=1)] = 0.0,
    chatwoot_500: Annotated[float, typer.Option(min=0, max=1)] = 0.0,
    chatwoot_version: ChatwootVersionOpt = "latest",
    mode: ReceiverOpt = "account_webhook",
    bot_token: Annotated[
        bool, typer.Option("--bot-token", help="Give Sluice the agent bot's own token.")
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
) -> None:
    """Many concurrent conversations through the simulator, measured as customers see it."""
    from sluice.loadtest import LoadConfig, parse_mode, report_table, run_loadtest, write_json

    settings = _settings(quiet=True)
    try:
        cfg = LoadConfig(
            conversations=conversations,
            rate=rate,
            duration_s=duration,
            broker_latency_ms=broker_latency,
            processes=processes,
            chatwoot_429_rate=chatwoot_429,
            chatwoot_500_rate=chatwoot_500,
            chatwoot_version=chatwoot_version,
            mode=parse_mode(mode),
            api_token_kind="bot" if bot_token else "user_admin",
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with _redis(settings) as (url, _):
        report = _run(lambda: run_loadtest(settings, url, cfg, console))
    console.print(report_table(report))
    if json_out is not None:
        write_json(report, json_out)
        console.print(f"report written to {json_out}")
    if report["missing"] or report["duplicate_replies"]:
        raise typer.Exit(1)


@app.command()
def validate(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Check configuration, Redis, scripts, pool, a canary round trip, the rate limit,
    pause/resume and alert channels; exit 1 on any failure."""
    from sluice import validate as checks

    settings = _settings(quiet=True)
    with _redis(settings) as (url, _):
        results = _run(lambda: checks.run(settings, url, _channel_checks(settings)))
    failed = any(c.outcome == "fail" for c in results)
    if as_json:
        console.print_json(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in results]}))
    else:
        table = Table(title="sluice validate", header_style="bold")
        table.add_column("")
        table.add_column("check")
        table.add_column("detail")
        marks = {"pass": "[green]✔[/green]", "warn": "[yellow]![/yellow]", "fail": "[red]✘[/red]"}
        for c in results:
            table.add_row(marks[c.outcome], c.name, c.detail)
        console.print(table)
        console.print("[red]FAILED[/red]" if failed else "[green]all checks passed[/green]")
    if failed:
        raise typer.Exit(1)


def _channel_checks(settings: Settings) -> Any:
    """Dry-run reachability of the configured alert channels."""
    from sluice.monitor.service import check_channels
    from sluice.validate import Check

    async def run() -> list[Check]:
        return [
            Check(
                f"alert channel {name}",
                "pass" if problem is None else "fail",
                problem or "reachable",
            )
            for name, problem in await check_channels()
        ]

    return run


dlq = typer.Typer(help="Dead letters: list, retry, purge.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")


@dlq.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Dead-lettered jobs with their last error."""
    settings = _settings(quiet=True)
    _require_url(settings)
    records = _with_runtime(
        settings, str(settings.redis_url), lambda rt: rt.queue.dead_letters(limit)
    )
    if as_json:
        console.print_json(json.dumps([r.as_dict() for r in records]))
        return
    table = Table(title=f"Dead letters of {settings.queue!r}", header_style="bold")
    for col in ("job", "conversation", "attempts", "error"):
        table.add_column(col)
    for r in records:
        table.add_row(r.id, r.key, str(r.attempt), r.error or "")
    console.print(table)


@dlq.command("retry")
def dlq_retry(job_ids: Annotated[list[str], typer.Argument(help="Job ids to requeue.")]) -> None:
    """Requeue dead letters with fresh attempts."""
    settings = _settings(quiet=True)
    _require_url(settings)

    async def retry(rt: Runtime) -> list[bool]:
        return [await rt.queue.retry_dead(job_id) for job_id in job_ids]

    results = _with_runtime(settings, str(settings.redis_url), retry)
    for job_id, ok in zip(job_ids, results, strict=True):
        console.print(f"{job_id}: {'requeued' if ok else 'not a dead letter'}")
    if not all(results):
        raise typer.Exit(1)


@dlq.command("purge")
def dlq_purge(
    job_ids: Annotated[list[str] | None, typer.Argument(help="Ids (none = all).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete dead letters for good."""
    settings = _settings(quiet=True)
    _require_url(settings)
    if not job_ids and not yes:
        typer.confirm(f"Delete ALL dead letters of {settings.queue!r}?", abort=True)
    purged = _with_runtime(
        settings, str(settings.redis_url), lambda rt: rt.queue.purge_dead(job_ids or None)
    )
    console.print(f"purged {purged} dead letters")


def _require_url(settings: Settings) -> None:
    if not settings.redis_url:
        err.print(
            "[red]REDIS_URL is not set:[/red] operating commands act on a running "
            "Sluice's Redis; set REDIS_URL to it"
        )
        raise typer.Exit(2)


def main() -> None:  # pragma: no cover - console script entry
    logging.captureWarnings(True)
    app()
