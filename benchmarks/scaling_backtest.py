"""Backtest of predictive scaling against reactive scaling on a generated 7-day trace.

    .venv/bin/python benchmarks/scaling_backtest.py [--seed 7] [--days 7] [--startup-min 2]
        [--cold] [--json PATH]

The trace: arrivals per minute with a daily profile (quiet night, morning ramp, lunch dip,
afternoon peak), a weekly one (Saturday and Sunday at 45 % and 35 % of a weekday), a trend
(+2 % a day), Poisson noise and bursts (two to four a day, ×1.8–3.5 for 5–40 minutes, at
random times), from ``--seed``. A week of the same trace before it is the history the
forecaster starts with (a system that has run a week); ``--cold`` starts it with none.

What is compressed, and why: replaying 7 days in real time is impossible here, and at any
useful speed-up the real workers' scale-up delay (a pod or process starting) and the SLA
(seconds) would be compressed with it. So the replay is a discrete-event (fluid) model of
the queue at a 10-second step: each step the minute's arrivals/6 join the backlog, the
ready processes serve ``slots × 10 s / service time`` of it, FIFO; a process asked for
becomes ready ``--startup-min`` minutes later (scheduling, image, Python start) and costs
worker-minutes from the moment it is asked for; a process stopped stops at once (it hands
its jobs back, docs/scaling.md). What is real: the predictive side runs Sluice's own
forecaster and recommendation (:mod:`sluice.scaling.forecast`, :mod:`sluice.scaling.
recommend`) exactly as the leader does, refitting the seasons every hour and forecasting
every minute from the finished minutes only. The reactive side is the Kubernetes HPA
algorithm on Sluice's 1-minute worker utilization (desired = ceil(current × utilization /
target), 10 % tolerance, 5-minute scale-down stabilisation), evaluated every minute, with
the same bounds.

Reported per policy: SLA breach minutes (minutes in which a message arrived that waited
longer than the SLA warning threshold minus its service time, i.e. finished after the
threshold), worker-minutes (processes paid for, summed over minutes), the worst wait, and
scale changes. The goal (issue): predictive breach minutes ≤ half the reactive ones, at no
more worker-minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from sluice.scaling.forecast import (
    DAY_MIN,
    SeasonalModel,
    fit_model,
    recent_mean_forecast,
)
from sluice.scaling.recommend import recommend

STEP_S = 10
STEPS_PER_MIN = 60 // STEP_S


@dataclass(frozen=True)
class Params:
    service_s: float = 3.0  # a broker call (an LLM reply) keeps its slot 3 s
    slots: int = 10  # WORKER_CONCURRENCY
    target_utilization: float = 0.7
    min_workers: int = 1
    max_workers: int = 30
    sla_s: float = 10.0  # SLA_WARNING_THRESHOLD
    startup_min: int = 2
    peak_per_min: float = 1200.0  # a weekday's afternoon peak, arrivals per minute
    band: float = 0.9
    lookahead_min: int = 3
    drain_s: float = 60.0  # serve what is waiting within this (0: the formula alone)
    refit_every_min: int = 60


def daily_shape(minute_of_day: int) -> float:
    """Share of the weekday peak at this time of day (UTC)."""
    h = minute_of_day / 60
    night = 0.08
    morning = 0.75 * _bump(h, 10.5, 2.2)
    afternoon = 1.0 * _bump(h, 15.0, 2.0)
    evening = 0.35 * _bump(h, 20.0, 1.8)
    lunch_dip = -0.25 * _bump(h, 12.75, 0.6)
    return max(0.03, night + morning + afternoon + evening + lunch_dip)


def _bump(x: float, centre: float, width: float) -> float:
    return math.exp(-0.5 * ((x - centre) / width) ** 2)


WEEKLY = (1.0, 1.02, 1.0, 0.97, 0.9, 0.45, 0.35)  # Monday .. Sunday


def make_trace(
    days: int, seed: int, params: Params, start_minute: int
) -> tuple[list[int], list[bool]]:
    """Arrivals per minute from ``start_minute`` (a Monday 00:00 UTC) for ``days`` days, and
    which minutes are in a burst (or within 10 minutes after one: its backlog's drain)."""
    rng = random.Random(seed)
    n = days * DAY_MIN
    bursts = [1.0] * n
    for day in range(days):
        for _ in range(rng.randint(2, 4)):
            at = day * DAY_MIN + rng.randint(7 * 60, 22 * 60)
            length = rng.randint(5, 40)
            factor = rng.uniform(1.8, 3.5)
            for i in range(length):
                if at + i < n:
                    ramp = min(1.0, (i + 1) / 3)  # a burst builds over three minutes
                    bursts[at + i] = max(bursts[at + i], 1 + (factor - 1) * ramp)
    trace = []
    for i in range(n):
        minute = start_minute + i
        weekday = (minute // DAY_MIN + 3) % 7
        trend = 1 + 0.02 * (i / DAY_MIN)
        rate = params.peak_per_min * daily_shape(minute % DAY_MIN) * WEEKLY[weekday] * trend
        trace.append(_poisson(rng, rate * bursts[i]))
    in_burst = [any(bursts[j] > 1 for j in range(max(0, i - 10), i + 1)) for i in range(n)]
    return trace, in_burst


def _poisson(rng: random.Random, mean: float) -> int:
    # Normal approximation above 50 (exact enough for counts, and fast); Knuth's below.
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass
class Outcome:
    policy: str
    breach_minutes: int = 0
    worker_minutes: int = 0
    worst_wait_s: float = 0.0
    scale_changes: int = 0
    max_workers_used: int = 0
    decide_ms_mean: float = 0.0
    breach_minutes_in_bursts: int = 0
    breached: list[int] = field(default_factory=list, repr=False)
    notes: list[str] = field(default_factory=list)


Policy = Callable[[int, list[int], int, float, float], int]
"""(the last finished minute, unix s // 60; the arrivals of every finished minute up to it,
oldest first; processes now; last minute's utilization; messages waiting now) -> processes
wanted."""


def replay(
    trace: list[int],
    history: list[int],
    start: int,
    params: Params,
    policy: Policy,
    ready_log: list[int] | None = None,
    wait_log: list[float] | None = None,
) -> Outcome:
    """Run the fluid queue over ``trace`` (its first minute is ``start``, unix s // 60) with
    ``policy`` deciding at the start of every minute. ``ready_log`` and ``wait_log``, when
    given, receive each minute's ready processes and longest wait (s), for the check
    against real workers (benchmarks/scaling_replay_check.py)."""
    outcome = Outcome(policy="")
    per_process_rate = params.slots / params.service_s  # messages per second at 100 %
    ready_at: list[int] = []  # minute index at which each process is ready
    asked = params.min_workers
    ready_at = [-(10**9)] * asked
    backlog = 0.0
    seen = list(history)
    utilization = 0.0
    decide_s = 0.0
    for minute, arrivals in enumerate(trace):
        started = time.perf_counter()
        wanted = policy(start + minute - 1, seen, len(ready_at), utilization, backlog)
        decide_s += time.perf_counter() - started
        wanted = min(params.max_workers, max(params.min_workers, wanted))
        if wanted != len(ready_at):
            outcome.scale_changes += 1
        if wanted > len(ready_at):
            ready_at += [minute + params.startup_min] * (wanted - len(ready_at))
        elif wanted < len(ready_at):
            # Stop the newest first (a starting one is the cheapest to give up).
            ready_at = sorted(ready_at)[:wanted]
        outcome.worker_minutes += len(ready_at)
        outcome.max_workers_used = max(outcome.max_workers_used, len(ready_at))
        ready = sum(1 for r in ready_at if r <= minute)
        rate = ready * per_process_rate  # messages per second
        busy = 0.0
        breach = False
        worst = 0.0
        for _ in range(STEPS_PER_MIN):
            backlog += arrivals / STEPS_PER_MIN
            served = min(backlog, rate * STEP_S)
            backlog -= served
            busy += served * params.service_s
            # FIFO: the last message in waits for the backlog ahead of it to be served.
            wait = backlog / rate if rate > 0 else float("inf")
            if arrivals and wait > params.sla_s - params.service_s:
                breach = True
            worst = max(worst, min(wait, 1e9))
        outcome.worst_wait_s = max(outcome.worst_wait_s, worst)
        if ready_log is not None:
            ready_log.append(ready)
        if wait_log is not None:
            wait_log.append(worst)
        capacity = ready * params.slots * 60
        utilization = min(1.0, busy / capacity) if capacity else 1.0
        if breach:
            outcome.breach_minutes += 1
            outcome.breached.append(minute)
        seen.append(arrivals)
    outcome.decide_ms_mean = decide_s / max(1, len(trace)) * 1000
    return outcome


def reactive(params: Params) -> Policy:
    """The Kubernetes HPA algorithm on utilization: ceil(current × util / target), no change
    within 10 % of the target, scale-down to the highest recommendation of the last 5
    minutes (HPA's default stabilisation window)."""
    recent: list[int] = []

    def decide(last: int, seen: list[int], current: int, utilization: float, _: float) -> int:
        ratio = utilization / params.target_utilization
        want = current if abs(ratio - 1) <= 0.1 else math.ceil(current * ratio)
        want = min(params.max_workers, max(params.min_workers, want))
        recent.append(want)
        del recent[:-5]
        return want if want >= current else max(recent)

    return decide


def threshold(params: Params, k: int = 2) -> Policy:
    """The issue's example of reactive scaling: one process more when utilization stayed
    above 80 % for ``k`` minutes, one fewer when it stayed below 50 % for 5 minutes."""
    history: list[float] = []

    def decide(last: int, seen: list[int], current: int, utilization: float, _: float) -> int:
        history.append(utilization)
        del history[:-5]
        if len(history) >= k and all(u > 0.8 for u in history[-k:]):
            history.clear()
            return current + 1
        if len(history) >= 5 and all(u < 0.5 for u in history):
            history.clear()
            return current - 1
        return current

    return decide


def predictive(params: Params) -> Policy:
    """Sluice's forecaster and recommendation, as the monitoring leader runs them: refit the
    seasons every ``refit_every_min`` minutes on up to 7 days of finished minutes,
    forecast every minute, take the largest upper band over ``lookahead_min``."""
    model: list[SeasonalModel | None] = [None]

    def decide(last: int, seen: list[int], current: int, _: float, waiting: float) -> int:
        history = seen[-7 * DAY_MIN :]
        if len(history) < DAY_MIN:
            forecast = recent_mean_forecast(history, last, band=params.band)
        else:
            fitted = model[0]
            if fitted is None or last - fitted.fitted_until >= params.refit_every_min:
                fitted = model[0] = fit_model(history, last, band=params.band)
            forecast = fitted.forecast(history, last)
        return desired_for(params, forecast.peak_upper_within(params.lookahead_min), waiting)

    return decide


def desired_for(params: Params, arrivals_per_min: float, waiting: float) -> int:
    """The recommendation formula (sluice.scaling.recommend) for an arrival rate per minute
    plus the waiting messages drained within ``drain_s``: what predictive and oracle share."""
    drain = waiting / params.drain_s if params.drain_s > 0 else 0.0
    return recommend(
        arrivals_per_min / 60 + drain,
        params.service_s,
        params.slots,
        params.target_utilization,
        params.min_workers,
        params.max_workers,
    ).desired


def oracle(params: Params, trace: list[int], first: int) -> Policy:
    """A reference, not a policy one can run: the recommendation formula on the true
    arrivals of the next ``startup_min + 1`` minutes (``first``: the trace's first minute)
    and what waits. It shows what perfect foresight would buy."""

    def decide(last: int, seen: list[int], current: int, _: float, waiting: float) -> int:
        now = last + 1 - first
        return desired_for(params, max(trace[now : now + params.startup_min + 1] or [0]), waiting)

    return decide


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--startup-min", type=int, default=2)
    parser.add_argument("--lookahead-min", type=int, default=3)
    parser.add_argument("--band", type=float, default=0.9)
    parser.add_argument("--drain-s", type=float, default=60.0, help="0: no backlog term")
    parser.add_argument("--cold", action="store_true", help="start with no history")
    parser.add_argument("--json", help="write the outcome here")
    args = parser.parse_args(argv)
    params = Params(
        startup_min=args.startup_min,
        lookahead_min=args.lookahead_min,
        band=args.band,
        drain_s=args.drain_s,
    )
    # One trace of a week of history and the evaluated days after it, from a Monday 00:00
    # UTC (2025-12-29): the forecaster's weekdays are the trace's.
    start = 29_449_440  # 2025-12-29T00:00Z // 60
    warmup = 0 if args.cold else 7 * DAY_MIN
    arrivals, in_burst = make_trace(args.days + warmup // DAY_MIN, args.seed, params, start)
    history, trace, bursty = arrivals[:warmup], arrivals[warmup:], in_burst[warmup:]
    outcomes = []
    policies = (
        ("reactive: util > 80 % for 2 min", threshold),
        ("reactive: HPA on utilization", reactive),
        ("predictive", predictive),
    )
    first = start + warmup
    for name, make in [*policies, ("oracle (knows the next minutes)", None)]:
        began = time.perf_counter()
        policy = make(params) if make is not None else oracle(params, trace, first)
        outcome = replay(trace, history, first, params, policy)
        outcome.policy = name
        outcome.breach_minutes_in_bursts = sum(bursty[m] for m in outcome.breached)
        outcome.notes.append(f"replayed in {time.perf_counter() - began:.1f} s")
        outcomes.append(outcome)
    _print(outcomes, params, args, sum(trace), sum(bursty))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"params": asdict(params), "outcomes": [asdict(o) for o in outcomes]}, fh)
    predictive_o = outcomes[-2]
    for reactive_o in outcomes[:-2]:
        breach = _ratio(predictive_o.breach_minutes, reactive_o.breach_minutes)
        cost = _ratio(predictive_o.worker_minutes, reactive_o.worker_minutes)
        met = (
            predictive_o.breach_minutes * 2 <= reactive_o.breach_minutes
            and predictive_o.worker_minutes <= reactive_o.worker_minutes
        )
        print(
            f"predictive / {reactive_o.policy}: breach minutes {breach}, worker-minutes "
            f"{cost}; goal (≤ 0.5 at ≤ 1.0) {'met' if met else 'NOT met'}"
        )
    return 0


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def _print(
    outcomes: list[Outcome], params: Params, args: argparse.Namespace, total: int, bursty: int
) -> None:
    print(
        f"trace: {args.days} days, seed {args.seed}, {total} arrivals, {bursty} minutes in "
        f"or just after a burst, weekday peak "
        f"{params.peak_per_min:.0f}/min; history: {'none (cold)' if args.cold else '7 days'}; "
        f"service {params.service_s} s, {params.slots} slots/process, target "
        f"{params.target_utilization}, bounds {params.min_workers}..{params.max_workers}, "
        f"startup {params.startup_min} min, SLA {params.sla_s} s, band {params.band}, "
        f"lookahead {params.lookahead_min} min, drain {params.drain_s} s"
    )
    print(
        f"{'policy':32} {'breach min':>10} {'in bursts':>9} {'worker-min':>10} "
        f"{'worst wait s':>12} "
        f"{'changes':>8} {'max procs':>9} {'decide ms':>9}"
    )
    for o in outcomes:
        print(
            f"{o.policy:32} {o.breach_minutes:>10} {o.breach_minutes_in_bursts:>9} "
            f"{o.worker_minutes:>10} "
            f"{o.worst_wait_s:>12.1f} {o.scale_changes:>8} {o.max_workers_used:>9} "
            f"{o.decide_ms_mean:>9.2f}   {'; '.join(o.notes)}"
        )


if __name__ == "__main__":
    sys.exit(main())
