"""An AI endpoint down for two minutes under 20 messages/s: the circuit breaker against none.

    .venv/bin/python benchmarks/breaker_outage.py                  # the full run (~9 min)
    .venv/bin/python benchmarks/breaker_outage.py --scale 0.25     # a short one (~2.5 min)
    .venv/bin/python benchmarks/breaker_outage.py --fault hang --outage-s 60

The whole system on loopback, as ``sluice loadtest`` runs it (the Chatwoot simulator, the
API and an in-process worker: :func:`sluice.loadtest.run_system_with_simulator`, its
customers: :func:`sluice.loadtest.start_customers`), with one AI broker (``llm``) answering
through a fake OpenAI-compatible endpoint (:class:`sluice.testing.fake_llm.FakeLlm`,
0.3 s per completion) and a human broker for handoffs. Each variant runs the same timeline
on a queue of its own, one after the other in the same process: ``--warm-s`` healthy, then
the endpoint down for ``--outage-s``, then ``--after-s`` healthy again. The outage
(``--fault``) is by default what OpenAI documents for an overloaded service: every request
answered at once with ``503`` and its error body; ``hang`` accepts requests and never
answers (each call ends at its SLA-derived timeout); ``refused`` closes the port.

Variants: ``off`` (SLUICE_BREAKER_ENABLED=false: today's behaviour, retries with backoff,
then a handoff) and ``on`` (the breaker with its defaults, fallback ``--fallback``).

Every customer line is accounted for from the fake Chatwoot's state after the run drained:
answered (a reply after it: by the model or by the fallback), handed off (its conversation
is ``open``, with a human: the bot stays silent by design), dead-lettered, or lost (none of
these: must be 0). The SLA of a line is from its creation in Chatwoot to the first reply
after it; a breach is a line without a reply within SLA_WARNING_THRESHOLD (10 s), handed-off
lines included (the customer waits for the human).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from sluice.broker.breaker import read_breakers
from sluice.loadtest import LoadConfig, Tally, run_system_with_simulator, start_customers
from sluice.service.runtime import Runtime
from sluice.settings.config import load_settings
from sluice.simulator import ChatwootSimulator
from sluice.testing.fake_llm import FakeLlm

SLA_MS = 10_000
MODEL_ANSWER = "Thanks for your message! Your order ships tomorrow."
# One AI broker: a human broker would take its share of new conversations from the start
# (the assigner balances over every broker), and handoffs go to Chatwoot's own routing.
BROKERS = json.dumps([{"name": "llm-bot", "kind": "ai", "handler": "llm"}])


NO_REPLY = float("inf")  # a line the bot never answered (handed off, dead or lost)


class HandoffReasons(logging.Handler):
    """Why turns were handed off, from the pipeline's log line ("conversation K handed off
    to A: reason"), with numbers and quoted bodies cut so that alike reasons count as one."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.reasons: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if " handed off to " in message:
            reason = message.split(": ", 1)[-1].split(": {", 1)[0]
            self.reasons[re.sub(r"\d+(\.\d+)?", "N", reason)[:120]] += 1


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def account(
    sim: ChatwootSimulator, dead_messages: set[int], outage: tuple[float, float]
) -> dict[str, Any]:
    """Every customer line: answered (by whom, how fast), handed off, dead or lost."""
    lines = answered = by_model = by_fallback = handed_off = dead = lost = breaches = 0
    sla_all: list[float] = []
    sla_outage: list[float] = []
    conversations_handed_off = 0
    for account_id, conversation_id in sim.store.conversation_keys():
        status = sim.conversation(account_id, conversation_id)["status"]
        conversations_handed_off += status == "open"
        messages = sim.messages(account_id, conversation_id)
        replies = [m for m in messages if m["message_type"] == 1 and not m.get("private")]
        for line in (m for m in messages if m["message_type"] == 0):
            lines += 1
            created = float(line["created_at_epoch"])
            reply = next((r for r in replies if r["id"] > line["id"]), None)
            if reply is not None:
                answered += 1
                sla = (float(reply["created_at_epoch"]) - created) * 1000
                sla_all.append(sla)
                if outage[0] <= created <= outage[1]:
                    sla_outage.append(sla)
                breaches += sla > SLA_MS
                if reply["content"] == MODEL_ANSWER:
                    by_model += 1
                else:
                    by_fallback += 1
                continue
            sla_all.append(NO_REPLY)
            if outage[0] <= created <= outage[1]:
                sla_outage.append(NO_REPLY)
            breaches += 1
            if status == "open":
                handed_off += 1
            elif line["id"] in dead_messages:
                dead += 1
            else:
                lost += 1
    return {
        "lines": lines,
        "answered": answered,
        "answered_by_model": by_model,
        "answered_by_fallback": by_fallback,
        "handed_off": handed_off,
        "conversations_handed_off": conversations_handed_off,
        "dead": dead,
        "lost": lost,
        "breaches": breaches,
        "sla_ms": {q: percentile(sla_all, q) for q in (50, 95, 99)},
        "sla_outage_ms": {q: percentile(sla_outage, q) for q in (50, 95, 99)},
    }


async def drained(runtime: Runtime, limit_s: float) -> bool:
    """Whether the queue has nothing waiting, delayed or running (bounded)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        counts = await runtime.queue.counts()
        if counts["waiting"] + counts["delayed"] + counts["active"] == 0:
            return True
        await asyncio.sleep(0.5)
    return False


async def run_variant(name: str, args: argparse.Namespace, scale: float) -> dict[str, Any]:
    queue = f"bench-breaker-{name}-{int(time.time())}"
    warm, outage_s, after = args.warm_s * scale, args.outage_s * scale, args.after_s * scale
    cfg = LoadConfig(
        conversations=args.conversations,
        rate=args.rate,
        duration_s=warm + outage_s + after,
        broker_latency_ms=20,  # the template handler (the fallback)
        think_s=(0.5, 2.0),
        reply_timeout_s=args.reply_timeout_s,
        seed=args.seed,
    )
    env = {
        "SLUICE_BROKERS": BROKERS,
        "SLUICE_BREAKER_ENABLED": "true" if name == "on" else "false",
        "SLUICE_BREAKER_FALLBACK": args.fallback,
        "WORKER_CONCURRENCY": str(args.concurrency),
        "QUEUE_RATE_LIMIT": "0",
        "LLM_MODEL": "gpt-4o-mini",
    }
    async with FakeLlm(latency_s=args.model_latency_s, content=MODEL_ANSWER) as model:
        env["LLM_BASE_URL"] = model.base_url
        os.environ.update(env)  # the handler and breaker settings read the process environment
        settings = load_settings({"REDIS_URL": args.redis_url, "SLUICE_QUEUE": queue, **env})

        handoffs = HandoffReasons()
        pipeline_log = logging.getLogger("sluice.pipeline")
        pipeline_log.addHandler(handoffs)
        pipeline_log.setLevel(logging.INFO)

        async def body(sim: ChatwootSimulator, runtime: Runtime, api_url: str) -> dict[str, Any]:
            tally = Tally()
            stop = asyncio.Event()
            customers = start_customers(sim, cfg, tally, stop)
            await asyncio.sleep(warm)  # the scenario's timeline, not synchronization
            began = time.time()
            requests_before = model.requests
            await model.break_down(args.fault)
            print(f"  [{name}] endpoint down ({args.fault}) for {outage_s:.0f} s", flush=True)
            await asyncio.sleep(outage_s)
            await model.heal()
            ended = time.time()
            requests_during = model.requests - requests_before
            print(f"  [{name}] endpoint healthy again", flush=True)
            await asyncio.sleep(after)
            stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*customers, return_exceptions=True),
                    args.reply_timeout_s + 10,
                )
            for task in customers:
                task.cancel()
            await asyncio.gather(*customers, return_exceptions=True)
            print(f"  [{name}] customers stopped; draining the queue", flush=True)
            settled = await drained(runtime, 120)
            await sim.flush()
            print(f"  [{name}] drained: {settled}", flush=True)
            dead_records = await runtime.queue.dead_letters(10_000)
            dead_messages = {
                int(r.payload["message_id"])
                for r in dead_records
                if isinstance(r.payload, dict) and "message_id" in r.payload
            }
            views = await read_breakers(runtime.queue.redis, runtime.queue.keys)
            events = [
                fields[b"info"].decode()
                for _, fields in await runtime.queue.redis.xrange(runtime.queue.keys.events)
                if fields.get(b"type") == b"breaker"
            ]
            return {
                "variant": name,
                "drained": settled,
                "sent_by_customers": tally.sent,
                "dead_letters": len(dead_records),
                "model_requests_during_outage": requests_during,
                "model_requests": model.requests,
                "breaker": [v.as_dict() for v in views],
                "breaker_events": events,
                "handoff_reasons": dict(handoffs.reasons.most_common()),
                **account(sim, dead_messages, (began, ended)),
            }

        try:
            return await run_system_with_simulator(
                settings, args.redis_url, cfg, body, queue=queue, extra_env=env
            )
        finally:
            pipeline_log.removeHandler(handoffs)
            await delete_queue(args.redis_url, queue)


async def delete_queue(redis_url: str, name: str) -> None:
    """The run's own keys only (the machine's Redis is shared)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        batch = [k async for k in client.scan_iter(match=f"sluice:{{{name}}}:*", count=1000)]
        for start in range(0, len(batch), 500):
            await client.delete(*batch[start : start + 500])
    finally:
        await client.aclose()


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return "no reply" if value == NO_REPLY else f"{value / 1000:.2f} s"


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        ("lines sent", lambda r: str(r["lines"])),
        (
            "SLA p50 / p95 / p99 (all lines)",
            lambda r: " / ".join(fmt(r["sla_ms"][q]) for q in (50, 95, 99)),
        ),
        (
            "SLA p50 / p99, lines sent during the outage",
            lambda r: " / ".join(fmt(r["sla_outage_ms"][q]) for q in (50, 99)),
        ),
        (
            "breaches (no reply within 10 s)",
            lambda r: f"{r['breaches']} ({r['breaches'] / max(1, r['lines']):.1%})",
        ),
        ("answered by the model", lambda r: str(r["answered_by_model"])),
        ("answered by the fallback", lambda r: str(r["answered_by_fallback"])),
        (
            "handed off to a human (lines / conversations)",
            lambda r: f"{r['handed_off']} / {r['conversations_handed_off']}",
        ),
        ("dead letters", lambda r: str(r["dead_letters"])),
        ("messages lost", lambda r: str(r["lost"])),
        ("model requests during the outage", lambda r: str(r["model_requests_during_outage"])),
        ("breaker opened / closed", lambda r: breaker_counts(r)),
    ]
    names = [f"breaker {r['variant']}" for r in results]
    out = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(results)]
    for label, cell in rows:
        out.append(f"| {label} | " + " | ".join(cell(r) for r in results) + " |")
    return "\n".join(out)


def breaker_counts(result: dict[str, Any]) -> str:
    if not result["breaker"]:
        return "-"
    t = result["breaker"][0]["transitions"]
    return f"{t['open']} / {t['closed']}"


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--rate", type=float, default=20.0, help="offered messages/s")
    parser.add_argument("--conversations", type=int, default=80)
    parser.add_argument("--warm-s", type=float, default=30.0)
    parser.add_argument("--outage-s", type=float, default=120.0)
    parser.add_argument("--after-s", type=float, default=60.0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the three phases")
    parser.add_argument("--fault", default="503", help="503 (or any status), hang, refused")
    parser.add_argument("--fallback", default="template", choices=("template", "handoff"))
    parser.add_argument("--variants", default="off,on")
    parser.add_argument("--model-latency-s", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=40, help="worker slots")
    parser.add_argument("--reply-timeout-s", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.scale <= 0:
        parser.error("--scale must be positive")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in ("off", "on") for v in variants):
        parser.error("--variants takes off, on or both")
    print(
        f"breaker_outage: {args.rate:g} msg/s, {args.conversations} conversations, "
        f"{args.warm_s * args.scale:.0f} s healthy, {args.outage_s * args.scale:.0f} s down "
        f"({args.fault}), {args.after_s * args.scale:.0f} s healthy; fallback {args.fallback}",
        flush=True,
    )
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    logging.getLogger("sluice.breaker").setLevel(logging.INFO)  # its transitions, as they come
    results = []
    for name in variants:
        started = time.monotonic()
        print(f"variant {name}: running", flush=True)
        results.append(await run_variant(name, args, args.scale))
        print(f"variant {name}: done in {time.monotonic() - started:.0f} s", flush=True)
    print()
    print(table(results))
    for r in results:
        print(f"\nbreaker {r['variant']}: events {r['breaker_events']}")
        print(f"breaker {r['variant']}: handoffs by reason {r['handoff_reasons']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 1 if any(r["lost"] or not r["drained"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
