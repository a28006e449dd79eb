"""What every `sluice` command needs: settings (or exit 2), a Redis, an event loop, the
consoles.

Commands fail the same way everywhere: a bad setting or an unreachable Redis is exit 2
with one red line on stderr naming the cause, never a traceback. Answers (tables, JSON) go
to stdout and notices (addresses, the embedded Redis) to stderr, so ``sluice status --json``
pipes clean JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, TypeVar

import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console

from sluice import logs, tracing
from sluice.redis.embedded import EmbeddedRedis, EmbeddedRedisError, resolve_redis_url
from sluice.redis.pool import RedisUnavailableError
from sluice.service.runtime import Runtime, open_runtime
from sluice.settings.config import ConfigError, Settings, load_settings
from sluice.settings.redact import redact_urls_in

console = Console()
err = Console(stderr=True)
T = TypeVar("T")

HandlerOpt = Annotated[str, typer.Option(help="Job handler as package.module:function.")]
ProcessesOpt = Annotated[int, typer.Option(min=1, help="Worker processes to run.")]


def load_settings_or_exit(*, quiet: bool = False) -> Settings:
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
def redis_for(settings: Settings) -> Iterator[tuple[str, EmbeddedRedis | None]]:
    """REDIS_URL, or a private embedded server started here (main thread) and stopped on
    exit; it also dies with this process if it is killed."""
    try:
        url, server = resolve_redis_url(settings)
    except EmbeddedRedisError as exc:
        err.print(f"[red]no Redis:[/red] {exc}")
        raise typer.Exit(2) from None
    if server is not None:
        err.print(f"embedded Redis at [bold]{url}[/bold] (set REDIS_URL to use your own)")
        # Operating commands (status, pause, dlq ...) in another shell need this Redis too.
        err.print(f"  other shells: [bold]export REDIS_URL={url}[/bold]", highlight=False)
    try:
        yield url, server
    finally:
        if server is not None:
            server.stop()


@contextlib.contextmanager
def traced(service_name: str) -> Iterator[None]:
    """Traces for this process when the standard OTEL_* variables ask for them
    (docs/tracing.md; ``service_name`` unless OTEL_SERVICE_NAME says otherwise), flushed on
    the way out. A value Sluice cannot honour is exit 2 like any bad setting."""
    try:
        on = tracing.configure_tracing(service_name)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    try:
        yield
    finally:
        if on:
            tracing.shutdown_tracing()


def require_redis_url(settings: Settings) -> None:
    """Exit 2 without REDIS_URL: an operating command acts on a running Sluice's Redis, and
    a fresh embedded one would only answer for an empty queue."""
    if not settings.redis_url:
        err.print(
            "[red]REDIS_URL is not set:[/red] operating commands act on a running "
            "Sluice's Redis; set REDIS_URL to it"
        )
        raise typer.Exit(2)


def run_async(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on uvloop when it is installed (faster), else asyncio."""

    async def main() -> T:
        return await coro_fn()

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:
        return asyncio.run(main())


def with_runtime(settings: Settings, url: str, fn: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run ``fn`` with the queue runtime open (and closed afterwards, whatever happens).

    A Redis that cannot be reached is an operator's situation, not a bug: one line that says
    where and why (credentials redacted), exit 1, no traceback."""

    async def go() -> T:
        async with open_runtime(settings, url) as runtime:
            return await fn(runtime)

    try:
        return run_async(go)
    except (RedisUnavailableError, RedisConnectionError, RedisTimeoutError, OSError) as exc:
        err.print(
            f"[red]Redis unavailable:[/red] {redact_urls_in(str(exc))}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


def stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, for commands that run until stopped."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
