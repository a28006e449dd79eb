"""Adaptive against static concurrency, with the simulator's LLM endpoint as the broker
(sluice.simulator.llm_endpoint): three scenarios, each run static then adaptive on the
same machine, printed as a table, plotted into docs/ (SVG).

    .venv/bin/python benchmarks/adaptive_concurrency.py [--scenario a|b|c|all]
        [--scale 1.0] [--plot docs/adaptive-concurrency.svg]

(a) latency step: the broker's latency goes 200 ms → 2 s → 200 ms under 20 msg/s (the
    provider's incident, not our load). Static 10 slots serve 5 msg/s at 2 s: the backlog
    grows; adaptive follows the demand (20/s × 2 s = 40 busy slots).
(b) a broker degrading under its own load: latency grows past 4 requests in flight
    (squared), 429 with Retry-After past 6 (a rate-limited, continuous-batching LLM
    endpoint, see the model's docstring), 7 msg/s. It completes at most 10/s (4 in
    flight), 6.7/s at 6: static 10 slots push it past its knee into 429s and a backlog it
    never clears; adaptive backs off.
(c) steady load: 20 msg/s at 300 ms, nothing changes: throughput must stay within 2 % of
    static.

Two workers share the slots (static: 5 each = 10), the queue's global rate limit is the
optimized profile's 30/s, and the SLA budget is the warning threshold (10 s). A message's
SLA duration is enqueue → handler done; a message still unanswered when the run ends (or
dead-lettered) counts as a breach. ``--scale 0.25`` runs every phase a quarter as long
(a quick look, not the documented numbers). Each run uses a queue of its own on the given
Redis and deletes its keys at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from sluice import Job, Queue, Worker
from sluice.control.controller import ConcurrencyController, read_status
from sluice.control.law import LawConfig
from sluice.simulator.llm_endpoint import LlmEndpointModel, step_schedule

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MS = 10_000
WORKERS = 2
STATIC_PER_WORKER = 5
RATE_LIMIT = 30


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    rate: float  # arrivals per second
    seconds: float  # arrivals last this long (at scale 1)
    latency: list[tuple[float, float]]  # (from s, latency s), at scale 1
    knee: int | None = None
    capacity: int | None = None


SCENARIOS = {
    "a": Scenario(
        "a",
        "latency step 200 ms → 2 s → 200 ms, 20 msg/s",
        20.0,
        150.0,
        [(0.0, 0.2), (30.0, 2.0), (90.0, 0.2)],
    ),
    "b": Scenario(
        "b", "broker degrading under its own load, 7 msg/s", 7.0, 120.0, [(0.0, 0.4)], 4, 6
    ),
    "c": Scenario("c", "steady load, 20 msg/s at 300 ms", 20.0, 90.0, [(0.0, 0.3)]),
}


@dataclass
class Run:
    scenario: Scenario
    variant: str
    sent: dict[int, float] = field(default_factory=dict)  # message -> enqueued at (mono)
    done: dict[int, float] = field(default_factory=dict)  # message -> SLA duration (s)
    series: list[dict[str, float]] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    calls: int = 0
    throttled: int = 0
    dead: int = 0
    first_done: float | None = None
    last_done: float | None = None
    ended_at: float = 0.0  # when the run stopped waiting for answers

    def durations(self, now: float) -> list[float]:
        """Every message's SLA duration; unanswered ones count their age so far."""
        return [self.done.get(i, now - sent) for i, sent in self.sent.items()]

    def summary(self, now: float) -> dict[str, float]:
        values = sorted(self.durations(now))
        span = (self.last_done or now) - (self.first_done or now)
        return {
            "messages": len(values),
            "answered": len(self.done),
            "p50": _pct(values, 50),
            "p95": _pct(values, 95),
            "p99": _pct(values, 99),
            "breaches": sum(1 for v in values if v * 1000 > BUDGET_MS),
            "error_rate": self.throttled / self.calls if self.calls else 0.0,
            "throughput": (len(self.done) - 1) / span if span > 0 else 0.0,
            "dead": self.dead,
            "slots_max": max((s["slots"] for s in self.series), default=0),
            "slots_mean": statistics.fmean(s["slots"] for s in self.series) if self.series else 0.0,
        }


def _pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def run_variant(url: str, scenario: Scenario, variant: str, scale: float) -> Run:
    client = aioredis.Redis.from_url(url)
    name = f"adaptbench-{scenario.name}-{variant}-{uuid.uuid4().hex[:6]}"
    queue = Queue(name, redis=client, sla_warning_ms=BUDGET_MS, sla_critical_ms=3 * BUDGET_MS)
    steps = [(start * scale, latency) for start, latency in scenario.latency]
    model = LlmEndpointModel(
        step_schedule(steps), knee=scenario.knee, capacity=scenario.capacity, retry_after_s=1.0
    )
    run = Run(scenario, variant)

    async def handle(job: Job) -> None:
        await model.call()
        now = time.monotonic()
        index = int(job.payload["i"])
        run.done[index] = now - run.sent[index]
        run.first_done = run.first_done or now
        run.last_done = now

    adaptive = variant == "adaptive"
    workers = [
        Worker(
            queue,
            handle,
            concurrency=STATIC_PER_WORKER,
            rate_limit=RATE_LIMIT,
            handle_signals=False,
            adaptive=adaptive,
            retry_base_ms=1_000,
            worker_id=f"{name}-w{n}",
        )
        for n in range(WORKERS)
    ]
    controller = None
    if adaptive:
        config = LawConfig(min_per_worker=1, max_per_worker=50, budget_ms=BUDGET_MS)
        controller = ConcurrencyController(
            queue, config, configured=STATIC_PER_WORKER, rate_limit=RATE_LIMIT
        )
    tasks = [asyncio.create_task(w.run()) for w in workers]
    for w in workers:
        await w.wait_heartbeat()
    if controller is not None:
        controller.start()
    model.started_at = time.monotonic()
    started = model.started_at
    arrivals_s = scenario.seconds * scale
    stop_sampling = asyncio.Event()

    async def produce() -> None:
        rng = random.Random(1)  # the same arrivals for both variants
        at, index = 0.0, 0
        while True:
            at += rng.expovariate(scenario.rate)
            if at >= arrivals_s:
                return
            delay = started + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            run.sent[index] = time.monotonic()
            await queue.add(f"c{index}", {"i": index})
            index += 1

    async def sample() -> None:
        window: list[float] = []
        seen = 0
        while not stop_sampling.is_set():
            await asyncio.sleep(1.0)
            now = time.monotonic()
            durations = list(run.done.values())
            window = (window + durations[seen:])[-max(1, int(10 * scenario.rate)) :]
            seen = len(durations)
            oldest = min((run.sent[i] for i in run.sent if i not in run.done), default=now)
            run.series.append(
                {
                    "t": now - started,
                    "slots": sum(w.concurrency for w in workers),
                    "in_flight": model.in_flight,
                    "p99": _pct(sorted(window), 99) if window else 0.0,
                    "oldest": now - oldest,
                    "latency": model.base_latency_s(now - started),
                }
            )

    sampler = asyncio.create_task(sample())
    await produce()
    # Drain: every message answered, or the drain allowance (the budget, at least a minute
    # at scale 1) is over; whatever is left counts as breached at its age.
    drain_until = time.monotonic() + max(60.0 * scale, BUDGET_MS / 1000) * 3
    while len(run.done) < len(run.sent) and time.monotonic() < drain_until:
        counts = await queue.counts()
        if counts["dead"] and counts["waiting"] + counts["active"] + counts["delayed"] == 0:
            break
        await asyncio.sleep(0.5)
    end = time.monotonic()
    stop_sampling.set()
    await sampler
    if controller is not None:
        await controller.stop()
    for w in workers:
        w.request_stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    run.calls, run.throttled = model.calls, model.throttled
    run.dead = (await queue.counts())["dead"]
    if adaptive:
        events = await client.xrange(queue.keys.events)
        run.decisions = [
            f"{fields[b'info'].decode()}"
            for _, fields in events
            if fields.get(b"type") == b"concurrency"
        ]
        status = await read_status(queue)
        run.decisions.append(f"final target {status.target}")
    run.ended_at = end
    await _delete_queue(client, name)
    await client.aclose()
    return run


async def _delete_queue(client: aioredis.Redis, name: str) -> None:
    """Remove this run's keys (its own unique queue name: nothing else matches)."""
    async for key in client.scan_iter(match=f"sluice:{{{name}}}:*", count=1000):
        await client.unlink(key)


def print_table(runs: list[Run]) -> None:
    header = (
        f"{'scenario':<9}{'variant':<10}{'msgs':>6}{'p50 s':>8}{'p95 s':>8}{'p99 s':>8}"
        f"{'breach':>8}{'429 %':>7}{'dead':>6}{'thr/s':>8}{'slots':>12}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        s = run.summary(run.ended_at)
        slots = f"{s['slots_mean']:.0f} (≤{s['slots_max']:.0f})"
        print(
            f"{run.scenario.name:<9}{run.variant:<10}{s['messages']:>6.0f}{s['p50']:>8.2f}"
            f"{s['p95']:>8.2f}{s['p99']:>8.2f}{s['breaches']:>8.0f}"
            f"{100 * s['error_rate']:>7.1f}{s['dead']:>6.0f}{s['throughput']:>8.2f}{slots:>12}"
        )


def print_series(runs: list[Run], every_s: float) -> None:
    """Slots and rolling p99 over time, static beside adaptive, per scenario."""
    by_scenario: dict[str, dict[str, Run]] = {}
    for run in runs:
        by_scenario.setdefault(run.scenario.name, {})[run.variant] = run
    for name, variants in by_scenario.items():
        print(f"\n({name}) {SCENARIOS[name].title}: slots / rolling p99 (s) over time")
        print(f"{'t s':>6}{'latency':>9}{'static':>16}{'adaptive':>16}")
        length = max(len(r.series) for r in variants.values())
        step = max(1, round(every_s))
        for i in range(0, length, step):
            cells = []
            latency = ""
            for variant in ("static", "adaptive"):
                series = variants.get(variant)
                if series is None or i >= len(series.series):
                    cells.append(f"{'':>16}")
                    continue
                point = series.series[i]
                latency = f"{point['latency']:.1f} s"
                cells.append(f"{point['slots']:>6.0f} / {point['p99']:>6.1f}")
            t = i + 1
            print(f"{t:>6}{latency:>9}{cells[0]:>16}{cells[1]:>16}")


def write_svg(runs: list[Run], path: Path) -> None:
    """One panel per scenario: slots (left axis) and rolling p99 (right axis) over time,
    static dashed, adaptive solid, the SLA budget as a dotted line."""
    by_scenario: dict[str, dict[str, Run]] = {}
    for run in runs:
        by_scenario.setdefault(run.scenario.name, {})[run.variant] = run
    width, panel_h, pad = 900, 260, 50
    height = panel_h * len(by_scenario) + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for row, (name, variants) in enumerate(by_scenario.items()):
        parts.extend(_panel(name, variants, row * panel_h + 20, width, panel_h, pad))
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


_COLORS = {"static": "#c0392b", "adaptive": "#2471a3"}


def _panel(
    name: str, variants: dict[str, Run], top: int, width: int, panel_h: int, pad: int
) -> list[str]:
    """One scenario's panel of the SVG (see :func:`write_svg`)."""
    parts: list[str] = []
    colors = _COLORS
    plot_w, plot_h = width - 2 * pad, panel_h - 70
    t_max = max(p["t"] for r in variants.values() for p in r.series) or 1.0
    slots_max = max(p["slots"] for r in variants.values() for p in r.series) or 1.0
    p99_max = max(
        [BUDGET_MS / 1000 * 1.2]
        + [min(p["p99"], 120.0) for r in variants.values() for p in r.series]
    )

    def x(t: float) -> float:
        return pad + plot_w * t / t_max

    def y_slots(v: float) -> float:
        return top + 20 + plot_h * (1 - v / slots_max)

    def y_p99(v: float) -> float:
        return top + 20 + plot_h * (1 - min(v, p99_max) / p99_max)

    parts.append(
        f'<text x="{pad}" y="{top + 10}" font-weight="bold">({name}) {SCENARIOS[name].title}</text>'
    )
    # Where the broker's own latency is above its lowest: shaded, with its value.
    series = max(variants.values(), key=lambda r: len(r.series)).series
    low = min((p["latency"] for p in series), default=0.0)
    raised = [p for p in series if p["latency"] > low]
    if raised:
        x0, x1 = x(raised[0]["t"]), x(raised[-1]["t"])
        parts.append(
            f'<rect x="{x0:.1f}" y="{top + 20}" width="{x1 - x0:.1f}" height="{plot_h}" '
            f'fill="#f4d03f" fill-opacity="0.18"/>'
            f'<text x="{x0 + 4:.1f}" y="{top + 34}" fill="#7d6608">broker latency '
            f"{raised[0]['latency']:g} s</text>"
        )
    parts.append(
        f'<rect x="{pad}" y="{top + 20}" width="{plot_w}" height="{plot_h}" '
        f'fill="none" stroke="#999"/>'
    )
    budget_y = y_p99(BUDGET_MS / 1000)
    parts.append(
        f'<line x1="{pad}" x2="{pad + plot_w}" y1="{budget_y:.1f}" y2="{budget_y:.1f}" '
        f'stroke="#555" stroke-dasharray="2,3"/>'
        f'<text x="{pad + plot_w - 4}" y="{budget_y - 3:.1f}" text-anchor="end" '
        f'fill="#555">SLA budget {BUDGET_MS // 1000} s (p99 axis)</text>'
    )
    for variant, run in variants.items():
        color = colors[variant]
        slots = " ".join(f"{x(p['t']):.1f},{y_slots(p['slots']):.1f}" for p in run.series)
        p99 = " ".join(f"{x(p['t']):.1f},{y_p99(p['p99']):.1f}" for p in run.series)
        parts.append(f'<polyline points="{slots}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.append(
            f'<polyline points="{p99}" fill="none" stroke="{color}" stroke-width="1" '
            f'stroke-dasharray="5,3"/>'
        )
    axis_y = top + 20 + plot_h
    parts.append(
        f'<text x="{pad - 6}" y="{top + 28}" text-anchor="end">{slots_max:.0f}</text>'
        f'<text x="{pad - 6}" y="{axis_y}" text-anchor="end">0</text>'
        f'<text x="{pad + plot_w + 6}" y="{top + 28}">{p99_max:.0f} s</text>'
        f'<text x="{pad}" y="{axis_y + 16}">0 s</text>'
        f'<text x="{pad + plot_w}" y="{axis_y + 16}" text-anchor="end">{t_max:.0f} s</text>'
        f'<text x="{pad + plot_w / 2}" y="{axis_y + 32}" text-anchor="middle">'
        f"solid: slots (left axis), dashed: rolling p99 SLA duration (right axis); "
        f'<tspan fill="{colors["static"]}">static</tspan> · '
        f'<tspan fill="{colors["adaptive"]}">adaptive</tspan></text>'
    )
    return parts


def svg_to_png(svg: Path, height: int, width: int = 900) -> Path | None:
    """The SVG as a PNG beside it, drawn by a headless Chromium when one is installed (no
    plotting library needed); None without one."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return None
    png = svg.with_suffix(".png")
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            svg.resolve().as_uri(),
        ],
        check=False,
        capture_output=True,
        timeout=120,
    )
    return png if png.exists() else None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--scenario", choices=["a", "b", "c", "all"], default="all")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="phase lengths × this (0.25: a quick look)"
    )
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "adaptive-concurrency.svg")
    parser.add_argument("--json", type=Path, help="write the runs' summaries and series here")
    parser.add_argument("--decisions", action="store_true", help="print every decision")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # Every 429 retried and every dead letter is logged by the worker: not the point here.
    logging.getLogger("sluice").setLevel(logging.CRITICAL)
    names = ["a", "b", "c"] if args.scenario == "all" else [args.scenario]
    runs: list[Run] = []
    for name in names:
        for variant in ("static", "adaptive"):
            began = time.monotonic()
            run = await run_variant(args.redis_url, SCENARIOS[name], variant, args.scale)
            runs.append(run)
            print(
                f"({name}) {variant}: {len(run.done)}/{len(run.sent)} answered in "
                f"{time.monotonic() - began:.0f} s",
                file=sys.stderr,
            )
            if args.decisions:
                for line in run.decisions:
                    print(f"    {line}", file=sys.stderr)
    print(f"\nscale {args.scale}, {WORKERS} workers, SLA budget {BUDGET_MS / 1000:g} s\n")
    print_table(runs)
    print_series(runs, every_s=10 * args.scale if args.scale < 1 else 10)
    for run in runs:
        if run.variant == "adaptive":
            print(f"\n({run.scenario.name}) adaptive decisions ({len(run.decisions) - 1}):")
            for line in run.decisions[:12]:
                print(f"  {line}")
    if args.plot:
        write_svg(runs, args.plot)
        print(f"\nplot: {args.plot}")
        png = svg_to_png(args.plot, height=260 * len({r.scenario.name for r in runs}) + 20)
        if png is not None:
            print(f"plot: {png}")
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "scenario": r.scenario.name,
                        "variant": r.variant,
                        "summary": r.summary(r.ended_at),
                        "series": r.series,
                        "decisions": r.decisions,
                    }
                    for r in runs
                ],
                indent=1,
            )
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
