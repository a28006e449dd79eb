"""What one message costs the Redis server, and which script spends it.

    .venv/bin/python benchmarks/redis_cost.py [--messages 20000] [--conversations 2000]
        [--producers 32] [--concurrency 20] [--no-monitoring] [--breakdown] [--url URL]

The intake's path, measured on the server: ``--producers`` tasks enqueue the messages one
by one (``Queue.add`` with a message id and the intake's hops, as a webhook does), then a
``Worker`` drains them. Redis's own CPU counters (``INFO cpu``, user + sys) are read
around each phase and divided by the messages; ``INFO commandstats`` gives the calls and
the microseconds per command.

``--breakdown`` repeats the run with ``SLOWLOG`` logging every command (threshold 0) and
adds up each script's execution time by its SHA: that is the per-script split (only the
scripts' run time, not reading and parsing the request, so it sums below the CPU total).
The slow log costs time of its own, so the CPU figures come from the first run.

Run it alone: the figure is the server's CPU time, steadier than wall time, but another
process on the same two cores still moves it by some per cent, and anything else using the
same Redis server counts in its CPU and its command statistics: ``--url`` names a server of
its own (database 13 of the local one by default; the database is flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from collections import Counter
from typing import Any

import redis.asyncio as aioredis

from sluice import Job, Queue, Worker
from sluice.queue.scripts import SCRIPT_NAMES, script_source

URL = "redis://127.0.0.1:6379/13"
QUEUE = "redis-cost"


async def cpu_seconds(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def command_stats(client: aioredis.Redis) -> dict[str, tuple[int, float]]:
    """Per command: (calls, total µs)."""
    info = await client.info("commandstats")
    stats: dict[str, tuple[int, float]] = {}
    for name, value in info.items():
        if isinstance(value, dict):
            stats[name.removeprefix("cmdstat_")] = (int(value["calls"]), float(value["usec"]))
    return stats


def stats_delta(
    before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]]
) -> dict[str, tuple[int, float]]:
    delta = {}
    for name, (calls, usec) in after.items():
        calls0, usec0 = before.get(name, (0, 0.0))
        if calls - calls0 > 0:
            delta[name] = (calls - calls0, usec - usec0)
    return delta


async def enqueue_phase(queue: Queue, messages: int, conversations: int, producers: int) -> float:
    next_index = 0

    async def producer() -> None:
        nonlocal next_index
        while next_index < messages:
            index = next_index
            next_index += 1
            now = time.time() * 1000
            await queue.add(
                f"conv-{index % conversations}",
                {"text": "hello, where is my order?", "i": index},
                id=f"m{index}",
                hops={"written": now, "received": now},
            )

    started = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(producers)))
    return time.perf_counter() - started


async def drain_phase(queue: Queue, messages: int, concurrency: int) -> float:
    done = 0
    finished = asyncio.Event()

    async def handler(job: Job) -> None:
        nonlocal done
        done += 1
        if done >= messages:
            finished.set()

    worker = Worker(queue, handler, concurrency=concurrency, handle_signals=False)
    started = time.perf_counter()
    task = asyncio.create_task(worker.run())
    await finished.wait()
    elapsed = time.perf_counter() - started
    await worker.stop()
    await task
    return elapsed


async def one_run(args: argparse.Namespace, breakdown: bool) -> dict[str, Any]:
    admin = aioredis.Redis.from_url(args.url)
    await admin.flushdb()
    queue = Queue(QUEUE, url=args.url, monitoring=not args.no_monitoring)
    try:
        if breakdown:
            await admin.config_set("slowlog-log-slower-than", 0)
            await admin.config_set("slowlog-max-len", 1_000_000)
            await admin.slowlog_reset()
        phases: dict[str, Any] = {}
        for phase in ("enqueue", "drain"):
            cpu0, stats0 = await cpu_seconds(admin), await command_stats(admin)
            if phase == "enqueue":
                wall = await enqueue_phase(queue, args.messages, args.conversations, args.producers)
            else:
                wall = await drain_phase(queue, args.messages, args.concurrency)
            cpu1, stats1 = await cpu_seconds(admin), await command_stats(admin)
            phases[phase] = {
                "wall_s": wall,
                "cpu_us_per_msg": (cpu1 - cpu0) / args.messages * 1e6,
                "commands": stats_delta(stats0, stats1),
            }
        if breakdown:
            phases["scripts_us_per_msg"] = await script_times(admin, args.messages)
        return phases
    finally:
        if breakdown:
            await admin.config_set("slowlog-log-slower-than", 10_000)
            await admin.config_set("slowlog-max-len", 128)
            await admin.slowlog_reset()
        await queue.close()
        await admin.flushdb()
        await admin.aclose()


async def script_times(admin: aioredis.Redis, messages: int) -> dict[str, float]:
    by_sha = {hashlib.sha1(script_source(name).encode()).hexdigest(): name for name in SCRIPT_NAMES}
    entries = await admin.slowlog_get(1_000_000)
    usec: Counter[str] = Counter()
    for entry in entries:
        command = entry["command"]
        words = command.split() if isinstance(command, (bytes, str)) else []
        head = words[0].decode() if words and isinstance(words[0], bytes) else str(words[:1])
        if head.lower() == "evalsha" and len(words) > 1:
            sha = words[1].decode() if isinstance(words[1], bytes) else str(words[1])
            usec[by_sha.get(sha, sha[:8])] += int(entry["duration"])
        else:
            usec[head.lower()] += int(entry["duration"])
    return {name: total / messages for name, total in usec.most_common()}


def show(result: dict[str, Any], messages: int) -> None:
    total = 0.0
    for phase in ("enqueue", "drain"):
        data = result[phase]
        total += data["cpu_us_per_msg"]
        rate = messages / data["wall_s"]
        print(
            f"{phase:8} {data['cpu_us_per_msg']:7.1f} µs Redis CPU per message "
            f"({rate:,.0f} msg/s wall)"
        )
        for name, (calls, usec) in sorted(data["commands"].items(), key=lambda kv: -kv[1][1]):
            print(
                f"           {name:16} {calls / messages:6.2f} calls/msg "
                f"{usec / messages:7.1f} µs/msg"
            )
    print(f"total    {total:7.1f} µs Redis CPU per message")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    result = await one_run(args, breakdown=False)
    show(result, args.messages)
    if args.breakdown:
        detail = await one_run(args, breakdown=True)
        result["scripts_us_per_msg"] = detail["scripts_us_per_msg"]
        print("per script (SLOWLOG, execution time only):")
        for name, usec in detail["scripts_us_per_msg"].items():
            print(f"           {name:16} {usec:7.1f} µs/msg")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--conversations", type=int, default=2_000)
    parser.add_argument("--producers", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--no-monitoring", action="store_true")
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--url", default=URL, help=f"the Redis to measure (default {URL})")
    args = parser.parse_args()
    result = asyncio.run(measure(args))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2, default=list)


if __name__ == "__main__":
    main()
