"""`sluice loadtest`: run the customers against the system for a while and report what
they saw (SLA percentiles, compliance, duplicates) beside what the queue measured."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from sluice.loadtest.config import LoadConfig
from sluice.loadtest.customers import Tally, start_customers
from sluice.loadtest.parts import duplicate_replies
from sluice.loadtest.report import format_ms, summarize
from sluice.loadtest.system import run_system_with_simulator
from sluice.monitor.windows import WindowReader
from sluice.service.runtime import Runtime
from sluice.settings.config import Settings
from sluice.simulator import ChatwootSimulator


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def run_loadtest(
    settings: Settings,
    redis_url: str,
    cfg: LoadConfig,
    console: Console,
    *,
    queue: str | None = None,
) -> dict[str, Any]:
    """Run the load test on a queue of its own (``queue``, default ``loadtest-<time>``)."""
    queue = queue or f"loadtest-{int(time.time())}"

    async def body(sim: ChatwootSimulator, runtime: Runtime, api_url: str) -> dict[str, Any]:
        tally = Tally()
        stop = asyncio.Event()
        cpu0, wall0 = _cpu_s(), time.monotonic()
        customers = start_customers(sim, cfg, tally, stop)
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            deadline = time.monotonic() + cfg.duration_s
            while time.monotonic() < deadline:
                live.update(_progress(tally, cfg, deadline))
                await asyncio.sleep(0.5)
            stop.set()
            drain_until = time.monotonic() + cfg.reply_timeout_s
            while any(not c.done() for c in customers) and time.monotonic() < drain_until:
                live.update(_progress(tally, cfg, deadline))
                await asyncio.wait(customers, timeout=0.5)
        for c in customers:
            c.cancel()
        await asyncio.gather(*customers, return_exceptions=True)
        wall = time.monotonic() - wall0
        engines = await runtime.queue.current_engines()
        reader = WindowReader(
            runtime.queue.redis, runtime.queue.keys, parts=[e.keys for e in engines]
        )
        seconds = int(min(3600, max(60, (cfg.duration_s // 10 + 2) * 10)))
        window = await reader.window("run", seconds)
        report = summarize(cfg, tally, window, duplicate_replies(sim), sim.stats())
        report["process"] = {
            "cpu_percent": 100 * (_cpu_s() - cpu0) / wall if wall else None,
            "rss_peak_mb": _rss_peak_mb(),
        }
        return report

    return await run_system_with_simulator(settings, redis_url, cfg, body, queue=queue)


def _progress(tally: Tally, cfg: LoadConfig, deadline: float) -> Table:
    table = Table(title="sluice loadtest", header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    left = max(0.0, deadline - time.monotonic())
    table.add_row("time left", f"{left:.0f} s")
    table.add_row("conversations", str(cfg.conversations))
    table.add_row("lines sent / replied", f"{tally.sent} / {tally.replied}")
    table.add_row("missing", str(tally.missing))
    p50, p95 = tally.sla_ms.percentile(50), tally.sla_ms.percentile(95)
    table.add_row("SLA p50 / p95", f"{format_ms(p50)} / {format_ms(p95)}")
    within = tally.within(10_000)
    table.add_row("within 10 s", f"{within:.1%}" if within is not None else "-")
    return table
