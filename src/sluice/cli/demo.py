"""`sluice up --demo`: the system against the Chatwoot simulator, with demo customers who
write, wait for replies and write again, and a live table of how it goes.

It is the quickest way to see Sluice work without a Chatwoot: the same code paths as the
load test (:mod:`sluice.loadtest`), at a gentle rate, until Ctrl-C or ``--duration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from rich.live import Live

from sluice.cli.common import console, err, stop_event
from sluice.cli.queue import status_table
from sluice.cli.serve import announce
from sluice.service.runtime import Runtime
from sluice.settings.config import Settings
from sluice.worker import registry


async def run_demo(
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
    for noisy in ("sluice.jobs", "uvicorn.error", "sluice.service.pipeline"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = LoadConfig(
        conversations=conversations,
        rate=rate,
        duration_s=duration,
        processes=processes,
        broker_latency_ms=150,
    )

    async def body(sim: Any, runtime: Runtime, api_url: str) -> dict[str, Any]:
        announce(api_url)
        err.print(
            f"Chatwoot simulator: {sim.config.webhook_url and 'sending webhooks to'} "
            f"{sim.config.webhook_url}"
        )
        stop = stop_event()
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
            table = status_table(counts, workers, rate, runtime.redis.metrics().as_dict())
            p95 = tally.sla_ms.percentile(95)
            table.add_row("customer lines sent / replied", f"{tally.sent} / {tally.replied}")
            table.add_row("customer SLA p95", "-" if p95 is None else f"{p95 / 1000:.2f} s")
            live.update(table)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
