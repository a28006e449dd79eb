"""Check the backtest's queue model against real workers on a real queue, on one burst.

    flock /tmp/sluice-bench.lock .venv/bin/python benchmarks/scaling_replay_check.py \\
        [--seed 7] [--minutes 30] [--speedup 10] [--redis redis://127.0.0.1:6379/0]

benchmarks/scaling_backtest.py replays a week through a fluid model of the queue; this
replays ``--minutes`` of the same trace around its first daytime burst through the real
thing — Sluice's Queue on Redis and in-process Workers whose handler takes the service
time — with the worker count the predictive policy had in the backtest at each minute, and
compares, minute by minute, the longest queue wait and whether the SLA was breached.

Compressed, to run in minutes on a shared 2-core machine: time by ``--speedup`` (a trace
minute lasts 60/speedup s, the 3 s service 3/speedup s, the SLA with it), and load by 10
(a tenth of the arrivals, one slot per process instead of ten), which keeps every
process's utilization and every wait (in trace seconds) the same as the model's. Each
10-second step's arrivals are enqueued one by one, evenly spread over the step (the model
serves a step's arrivals at the step's rate, so its wait is that of spread arrivals).
A stopped worker stops gracefully (its running job finishes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from collections import defaultdict

import redis.asyncio as aioredis

from scaling_backtest import STEPS_PER_MIN, Params, make_trace, predictive, replay
from sluice import Job, Queue, Worker
from sluice.scaling.forecast import DAY_MIN

LOAD_DIVISOR = 10  # a tenth of the arrivals, one slot per process instead of ten


def burst_window(in_burst: list[bool], minutes: int) -> int:
    """The first minute of a window starting 5 minutes before the first burst after 08:00
    of the first evaluated day."""
    for minute, bursty in enumerate(in_burst):
        if bursty and minute % DAY_MIN >= 8 * 60:
            return max(0, minute - 5)
    raise SystemExit("no burst in the trace")


async def run_real(
    url: str, arrivals: list[int], ready: list[int], params: Params, speedup: float
) -> tuple[list[float], int]:
    """Replay ``arrivals`` with ``ready[m]`` workers in minute m; returns each minute's longest
    wait in trace seconds and how many jobs were enqueued."""
    client = aioredis.Redis.from_url(url)
    queue = Queue(f"scaling-check-{uuid.uuid4().hex[:8]}", redis=client)
    service_real = params.service_s / speedup
    waits: dict[int, float] = defaultdict(float)
    enqueued = 0
    finished = 0
    target: list[int] = []  # set once everything is enqueued
    drained = asyncio.Event()

    async def handler(job: Job) -> None:
        started = time.time()
        minute = int(job.payload["minute"])
        wait = (started - float(job.payload["at"])) * speedup
        waits[minute] = max(waits[minute], wait)
        await asyncio.sleep(service_real)
        nonlocal finished
        finished += 1
        if target and finished >= target[0]:
            drained.set()

    workers: list[tuple[Worker, asyncio.Task[None]]] = []

    async def scale_to(count: int) -> None:
        while len(workers) < count:
            worker = Worker(
                queue,
                handler,
                concurrency=params.slots // LOAD_DIVISOR,
                prefetch=0,
                handle_signals=False,
                idle_poll_s=0.05,
            )
            workers.append((worker, asyncio.create_task(worker.run())))
        while len(workers) > count:
            worker, task = workers.pop()
            await worker.stop()
            await task

    step_s = 60 / STEPS_PER_MIN / speedup
    began = time.monotonic()
    carry = 0.0
    try:
        for minute, count in enumerate(arrivals):
            await scale_to(ready[minute])
            for step in range(STEPS_PER_MIN):
                carry += count / STEPS_PER_MIN / LOAD_DIVISOR
                batch, carry = int(carry), carry - int(carry)
                step_start = began + (minute * STEPS_PER_MIN + step) * step_s
                for i in range(batch):  # spread evenly over the step, as arrivals come
                    due = step_start + i * step_s / batch
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    await queue.enqueue(f"c{enqueued}", {"minute": minute, "at": time.time()})
                    enqueued += 1
        target.append(enqueued)
        if finished >= enqueued:
            drained.set()
        await asyncio.wait_for(drained.wait(), 120)  # the tail drains
    finally:
        await scale_to(0)
        keys = [k async for k in client.scan_iter(match=f"sluice:{{{queue.name}}}:*")]
        if keys:
            await client.delete(*keys)
        with contextlib.suppress(Exception):
            await client.aclose()
    return [waits.get(m, 0.0) for m in range(len(arrivals))], enqueued


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--speedup", type=float, default=10.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    params = Params()
    start = 29_449_440  # as in scaling_backtest.py: a week of history, then the week
    arrivals, in_burst = make_trace(14, args.seed, params, start)
    history, trace = arrivals[: 7 * DAY_MIN], arrivals[7 * DAY_MIN :]
    ready: list[int] = []
    model_waits: list[float] = []
    outcome = replay(
        trace, history, start + 7 * DAY_MIN, params, predictive(params), ready, model_waits
    )
    first = burst_window(in_burst[7 * DAY_MIN :], args.minutes)
    window = range(first, first + args.minutes)
    segment = [trace[m] for m in window]
    real_waits, enqueued = asyncio.run(
        run_real(args.redis, segment, [ready[m] for m in window], params, args.speedup)
    )
    limit = params.sla_s - params.service_s
    print(
        f"seed {args.seed}, trace minutes {first}..{first + args.minutes - 1} of the evaluated "
        f"week (a burst), speed-up ×{args.speedup:g}, load ÷{LOAD_DIVISOR}, {enqueued} jobs"
    )
    print(f"{'minute':>6} {'arrivals':>8} {'procs':>5} {'model wait s':>12} {'real wait s':>11}")
    model_breach = real_breach = agree = 0
    for offset, minute in enumerate(window):
        model, real = model_waits[minute], real_waits[offset]
        mb, rb = model > limit, real > limit
        model_breach += mb
        real_breach += rb
        agree += mb == rb
        print(
            f"{minute:>6} {trace[minute]:>8} {ready[minute]:>5} {model:>12.1f} {real:>11.1f}"
            f"{'  breach (model)' if mb else ''}{'  breach (real)' if rb else ''}"
        )
    print(
        f"breach minutes: model {model_breach}, real {real_breach}; the two agree on "
        f"{agree} of {args.minutes} minutes (backtest total for the week: "
        f"{outcome.breach_minutes})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
