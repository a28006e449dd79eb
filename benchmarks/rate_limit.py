"""The global rate limit across worker processes: never more than R starts in any 1 s
window, and with a backlog at least 97 % of R achieved.

    .venv/bin/python benchmarks/rate_limit.py [--rate 30] [--processes 3] [--seconds 10]

Uses the test suite's worker process (tests/integration/worker_proc.py, mode "record").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from sluice import EnqueueRequest, Queue

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "integration" / "worker_proc.py"


def busiest_window(times: list[float]) -> int:
    ordered = sorted(times)
    return max(sum(1 for t in ordered[i:] if t < s + 1.0) for i, s in enumerate(ordered))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--rate", type=int, default=30)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    client = aioredis.Redis.from_url(args.redis_url)
    await client.flushdb()
    name = "ratebench"
    queue = Queue(name, redis=client)
    total = args.rate * (args.seconds + 2)
    await queue.pause()
    await queue.enqueue_many([EnqueueRequest(key=f"c{n}", payload={}) for n in range(total)])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - a driver starting its workers
            [sys.executable, str(WORKER), args.redis_url, name, "record", "--rate", str(args.rate)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(args.processes)
    ]
    starts: list[float] = []
    try:
        for _ in procs:
            await client.blpop([f"{name}:ready"], timeout=30)
        await queue.resume()
        while len(starts) < total:
            got = await client.blpop([f"{name}:starts"], timeout=30)
            if got is None:
                break
            starts.append(float(got[1].decode().split("|")[0]))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        await client.flushdb()
        await client.aclose()
    starts.sort()
    first = starts[0]
    window = args.seconds
    in_window = sum(1 for t in starts if first <= t < first + window)
    # Long run: every start before the last burst, over the time to that burst.
    last_burst = min(t for t in starts if t > starts[-1] - 0.5)
    before = sum(1 for t in starts if t < last_burst)
    sustained = before / (last_burst - first)
    result = {
        "rate_limit": args.rate,
        "processes": args.processes,
        "starts": len(starts),
        "busiest_1s_window": busiest_window(starts),
        "achieved_per_s": in_window / window,
        "achieved_pct_of_limit": 100 * in_window / window / args.rate,
        "sustained_per_s": sustained,
        "sustained_pct_of_limit": 100 * sustained / args.rate,
    }
    for key, value in result.items():
        print(f"{key:24} {value:10.2f}" if isinstance(value, float) else f"{key:24} {value:10}")
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
