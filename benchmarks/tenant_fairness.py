"""Tenant fairness: does one account's flood take the others' SLA? (docs/fairness.md)

    .venv/bin/python benchmarks/tenant_fairness.py [--accounts 10] [--rate 8] [--flood 10]
        [--slots 20] [--turn-ms 200] [--seconds 20] [--sla-ms 2000]
        [--concurrency-cap 5] [--rate-cap 0] [--url redis://127.0.0.1:6379/0]

Ten accounts write to the queue at random (Poisson) moments: nine at ``--rate`` messages/s
each, one at ``--flood`` times that. Each message goes to one of its account's
conversations (keys ``"<account>:<conversation>"``, as the intake writes them) through
``Queue.add``, the intake's call. One in-process ``Worker`` with ``--slots`` slots answers
each turn in ``--turn-ms`` (an awaited sleep standing for the model call), so capacity is
slots / turn seconds; the default offer is (9 + 10) * 8 = 152 messages/s against 100/s:
above capacity, the flood's backlog grows whatever the engine does.

The same load runs twice in one invocation, first with fairness off (plain
earliest-deadline-first), then with the per-account caps (``Queue.set_fairness``). For each
message: its queue wait (enqueued to handler start) and whether it was answered within
``--sla-ms`` of being enqueued. After ``--seconds`` of offer the worker has as long again to
drain; a message not answered by then missed its SLA and counts its age at the end as its
wait. Printed per variant: each account's SLA compliance and p50/p99 wait, the nine's
together, and the throughput while the offer lasted (the work-conserving check: with caps
it should stay within a few per cent of the run without).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from sluice import Job, Queue, Worker
from sluice.queue.fairness import FairnessCaps

FLOOD = "1"  # the flooding account's id


@dataclass
class Message:
    account: str
    enqueued: float
    started: float | None = None
    ended: float | None = None


@dataclass
class Run:
    name: str
    messages: dict[str, Message] = field(default_factory=dict)
    offer_s: float = 0.0
    answered_during_offer: int = 0
    decisions: dict[str, Any] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def arrivals(args: argparse.Namespace, seed: int) -> list[tuple[float, str, str]]:
    """(offset s, account, conversation key) for the whole offer, merged in time order; the
    same seed gives both variants the same messages at the same moments."""
    rng = random.Random(seed)
    out: list[tuple[float, str, str]] = []
    for a in range(1, args.accounts + 1):
        account = str(a)
        rate = args.rate * (args.flood if account == FLOOD else 1)
        conversations = int(50 * (args.flood if account == FLOOD else 1))
        t = rng.expovariate(rate)
        while t < args.seconds:
            out.append((t, account, f"{account}:{rng.randrange(conversations)}"))
            t += rng.expovariate(rate)
    out.sort()
    return out


async def one_run(
    args: argparse.Namespace, name: str, caps: FairnessCaps, plan: list[tuple[float, str, str]]
) -> Run:
    client = aioredis.Redis.from_url(args.url)
    queue = Queue(f"fair-bench-{uuid.uuid4().hex[:8]}", redis=client, monitoring=False)
    run = Run(name)
    await queue.set_fairness(caps)
    turn_s = args.turn_ms / 1000

    async def handler(job: Job) -> None:
        msg = run.messages[job.payload["m"]]
        msg.started = time.monotonic()
        await asyncio.sleep(turn_s)  # the model call: the work itself, not synchronization
        msg.ended = time.monotonic()

    worker = Worker(queue, handler, concurrency=args.slots, handle_signals=False)
    task = asyncio.create_task(worker.run())
    adds: set[asyncio.Task[Any]] = set()
    try:
        start = time.monotonic()
        for n, (offset, account, key) in enumerate(plan):
            delay = start + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # the arrival schedule (open loop)
            mid = str(n)
            run.messages[mid] = Message(account, time.monotonic())
            add = asyncio.create_task(queue.add(key, {"m": mid}, id=f"b-{mid}"))
            adds.add(add)
            add.add_done_callback(adds.discard)
        await asyncio.gather(*adds)
        offer_end = time.monotonic()
        run.offer_s = offer_end - start
        run.answered_during_offer = sum(
            1 for m in run.messages.values() if m.ended is not None and m.ended <= offer_end
        )
        drain_until = offer_end + args.seconds
        while time.monotonic() < drain_until:
            if all(m.ended is not None for m in run.messages.values()):
                break
            await asyncio.sleep(0.2)  # polling the benchmark's own record, not the engine
        snap = await queue.fairness()
        run.decisions = {
            "capped_concurrency": snap.capped_concurrency,
            "capped_rate": snap.capped_rate,
            "lent": snap.lent,
        }
    finally:
        await worker.stop()
        await task
        await queue.drain()
        await queue.set_fairness(FairnessCaps())
        await delete_keys(client, queue.name)
        await client.aclose()
    return run


async def delete_keys(client: aioredis.Redis, name: str) -> None:
    """Benchmark cleanup only (SCAN is fine here, never on a hot path)."""
    batch = [k async for k in client.scan_iter(match=f"sluice:{{{name}}}:*", count=1000)]
    for i in range(0, len(batch), 500):
        await client.delete(*batch[i : i + 500])


def report(run: Run, args: argparse.Namespace, end: float) -> dict[str, Any]:
    sla_s = args.sla_ms / 1000
    rows: dict[str, tuple[int, float, float, float]] = {}
    by_account: dict[str, list[Message]] = {}
    for m in run.messages.values():
        by_account.setdefault(m.account, []).append(m)
    others: list[Message] = []
    for account, msgs in sorted(by_account.items(), key=lambda kv: int(kv[0])):
        rows[account] = summary(msgs, sla_s, end)
        if account != FLOOD:
            others.extend(msgs)
    rows["nine"] = summary(others, sla_s, end)
    throughput = run.answered_during_offer / run.offer_s if run.offer_s else 0.0
    print(f"\n{run.name}: {len(run.messages)} messages offered over {run.offer_s:.1f} s")
    print(f"{'account':>8} {'msgs':>6} {'SLA ok':>8} {'p50 wait':>9} {'p99 wait':>9}")
    for account, (n, ok, p50, p99) in rows.items():
        label = f"{account}*" if account == FLOOD else account
        print(f"{label:>8} {n:>6} {ok:>7.1%} {p50:>8.2f}s {p99:>8.2f}s")
    print(f"throughput while offered: {throughput:.1f} turns/s; decisions: {run.decisions}")
    return {"rows": rows, "throughput": throughput}


def summary(msgs: list[Message], sla_s: float, end: float) -> tuple[int, float, float, float]:
    waits = [((m.started if m.started is not None else end) - m.enqueued) for m in msgs]
    ok = sum(1 for m in msgs if m.ended is not None and m.ended - m.enqueued <= sla_s)
    return (
        len(msgs),
        ok / len(msgs) if msgs else 0.0,
        percentile(waits, 0.5),
        percentile(waits, 0.99),
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--rate", type=float, default=8.0, help="messages/s of each small account")
    parser.add_argument("--flood", type=float, default=10.0, help="the flood's multiple of it")
    parser.add_argument("--slots", type=int, default=20)
    parser.add_argument("--turn-ms", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sla-ms", type=float, default=2000.0)
    parser.add_argument("--concurrency-cap", type=int, default=5)
    parser.add_argument("--rate-cap", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    plan = arrivals(args, args.seed)
    capacity = args.slots / (args.turn_ms / 1000)
    offered = len(plan) / args.seconds
    print(
        f"{args.accounts} accounts, account {FLOOD} offering {args.flood:g}x the others "
        f"({args.rate:g}/s each): {offered:.0f} messages/s offered against a capacity of "
        f"{capacity:.0f} turns/s ({args.slots} slots x {args.turn_ms:g} ms); SLA "
        f"{args.sla_ms:g} ms from enqueue to answer"
    )
    caps = FairnessCaps(concurrency=args.concurrency_cap, rate=args.rate_cap)
    results = {}
    for name, variant in (("fairness off", FairnessCaps()), (f"caps {caps}", caps)):
        run = await one_run(args, name, variant, plan)
        results[name] = report(run, args, time.monotonic())
    off, on = results.values()
    print(
        f"\nwith caps, throughput is {on['throughput'] / off['throughput']:.1%} of the run "
        f"without; the nine's SLA {off['rows']['nine'][1]:.1%} -> {on['rows']['nine'][1]:.1%}, "
        f"p99 wait {off['rows']['nine'][3]:.2f}s -> {on['rows']['nine'][3]:.2f}s"
    )


if __name__ == "__main__":
    asyncio.run(main())
