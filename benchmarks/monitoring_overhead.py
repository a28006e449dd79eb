"""Cost of monitoring: benchmark A with the SLA aggregates on and off, alternating, and
the Redis CPU each message costs.

    .venv/bin/python benchmarks/monitoring_overhead.py [--repeat 3] [--jobs 5000]

Runs benchmarks/adapters/sluice_bench.py (scenario A) with SLUICE_BENCH_MONITORING=1/0 and
reads Redis's own CPU counters (INFO cpu) around each run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import redis

ADAPTER = Path(__file__).with_name("adapters") / "sluice_bench.py"
URL = "redis://127.0.0.1:6379/14"


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def run_once(monitoring: bool, jobs: int, client: redis.Redis) -> dict[str, float]:
    env = {**os.environ, "SLUICE_BENCH_MONITORING": "1" if monitoring else "0"}
    before = redis_cpu_s(client)
    out = subprocess.run(
        [sys.executable, str(ADAPTER), "--scenario", "A", "--jobs", str(jobs), "--redis-url", URL],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    cpu = redis_cpu_s(client) - before
    record = json.loads(out.stdout.strip().splitlines()[-1])
    return {"throughput": float(record["throughput"]), "redis_cpu_us_per_job": cpu / jobs * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=5000)
    args = parser.parse_args()
    client = redis.Redis.from_url(URL)
    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for _ in range(args.repeat):
        for monitoring in (True, False):
            runs[monitoring].append(run_once(monitoring, args.jobs, client))
    result = {}
    for monitoring, label in ((True, "on"), (False, "off")):
        tp = [r["throughput"] for r in runs[monitoring]]
        cpu = [r["redis_cpu_us_per_job"] for r in runs[monitoring]]
        result[label] = {
            "throughput_median": statistics.median(tp),
            "throughput_min": min(tp),
            "throughput_max": max(tp),
            "redis_cpu_us_per_job_median": statistics.median(cpu),
        }
    ratio = result["on"]["throughput_median"] / result["off"]["throughput_median"]
    extra = (
        result["on"]["redis_cpu_us_per_job_median"] - result["off"]["redis_cpu_us_per_job_median"]
    )
    result["on_over_off"] = ratio
    result["monitoring_redis_cpu_us_per_job"] = extra
    for label in ("on", "off"):
        r = result[label]
        print(
            f"monitoring {label:3}: {r['throughput_median']:8.0f} jobs/s "
            f"({r['throughput_min']:.0f}-{r['throughput_max']:.0f}), "
            f"Redis CPU {r['redis_cpu_us_per_job_median']:.1f} µs/job"
        )
    print(f"on / off = {ratio:.1%}; monitoring costs Redis {extra:.1f} µs of CPU per job")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
