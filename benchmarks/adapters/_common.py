"""Shared driver for the peer-queue benchmark adapters (stdlib only).

Every ``<lib>_bench.py`` adapter imports this module twice over:

* in the **driver** process (``python <lib>_bench.py --scenario A ...``) it supplies the CLI,
  the scenario logic, the worker-process lifecycle, the measurement and the JSON line;
* in the **worker** process (started by the driver through the library's own worker entry
  point) it supplies :func:`worker_config` and :func:`stamp`, so the job body is the same
  everywhere: one ``RPUSH results_key "<enqueue_ts>,<start_ts>"`` then an optional sleep.

The driver talks to Redis through the tiny RESP client below, so the measurement code is the
same for every library and never depends on the library's own client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlparse

ADAPTERS_DIR = Path(__file__).resolve().parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
DEFAULT_RESULTS_KEY = "bench:results"
JOB_SLEEP_S = 0.05
WARMUP_MARK = -1.0
SCENARIOS = ("A", "B", "C", "D")
DEFAULT_JOBS = {"A": 5000, "B": 2000, "C": 2000, "D": 5000}

ENV_REDIS_URL = "BENCH_REDIS_URL"
ENV_RESULTS_KEY = "BENCH_RESULTS_KEY"
ENV_SLEEP = "BENCH_SLEEP"
ENV_CONCURRENCY = "BENCH_CONCURRENCY"


# --------------------------------------------------------------------------- worker side


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker process needs to know; passed from the driver through the environment."""

    redis_url: str
    results_key: str
    sleep_s: float
    concurrency: int


def worker_config() -> WorkerConfig:
    """Read the worker configuration from the environment (safe defaults for imports)."""
    return WorkerConfig(
        redis_url=os.environ.get(ENV_REDIS_URL, DEFAULT_REDIS_URL),
        results_key=os.environ.get(ENV_RESULTS_KEY, DEFAULT_RESULTS_KEY),
        sleep_s=float(os.environ.get(ENV_SLEEP, "0")),
        concurrency=int(os.environ.get(ENV_CONCURRENCY, "10")),
    )


def stamp(enqueue_ts: float, start_ts: float) -> str:
    """The value a job body pushes onto the results list."""
    return f"{enqueue_ts!r},{start_ts!r}"


def redis_location(url: str) -> tuple[str, int, int]:
    """(host, port, db) of a ``redis://host:port/db`` URL."""
    parsed = urlparse(url)
    db_text = parsed.path.lstrip("/") or "0"
    return parsed.hostname or "127.0.0.1", parsed.port or 6379, int(db_text)


# --------------------------------------------------------------------------- RESP client


class RespError(RuntimeError):
    """An error reply from Redis."""


class Resp:
    """Minimal blocking RESP2 client, enough for FLUSHDB/LLEN/LRANGE/DEL/PING."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        host, port, db = redis_location(url)
        self._sock = socket.create_connection((host, port), timeout=timeout_s)
        self._file: IO[bytes] = self._sock.makefile("rb")
        self.command("SELECT", str(db))

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def command(self, *parts: str) -> Any:
        payload = [f"*{len(parts)}\r\n".encode()]
        for part in parts:
            raw = part.encode()
            payload.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
        self._sock.sendall(b"".join(payload))
        return self._read()

    def _read(self) -> Any:
        line = self._file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body.decode()
        if kind == b"-":
            raise RespError(body.decode())
        if kind == b":":
            return int(body)
        if kind == b"$":
            return self._read_bulk(int(body))
        if kind == b"*":
            count = int(body)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise RespError(f"unexpected reply {line!r}")

    def _read_bulk(self, size: int) -> bytes | None:
        if size < 0:
            return None
        data = self._file.read(size + 2)
        return data[:-2]


# --------------------------------------------------------------------------- adapter API


class Producer(Protocol):
    """Enqueue side of one library. Sync libraries simply block inside these coroutines."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def enqueue_one(self, enqueue_ts: float) -> None: ...

    async def enqueue_many(self, stamps: Sequence[float]) -> str:
        """Enqueue all jobs; return ``"bulk"`` if a bulk API was used, else ``"loop"``."""
        ...


@dataclass
class Adapter:
    """Everything the driver needs to know about one library."""

    lib: str
    version: str
    producer: Producer
    worker_command: list[str]
    worker_env: dict[str, str] = field(default_factory=dict)
    notes: str = ""


@dataclass(frozen=True)
class BenchArgs:
    scenario: str
    jobs: int
    concurrency: int
    redis_url: str
    results_key: str
    timeout_s: float
    rate: float

    @property
    def sleep_s(self) -> float:
        return JOB_SLEEP_S if self.scenario in ("B", "C") else 0.0


def parse_args(argv: Sequence[str] | None = None) -> BenchArgs:
    parser = argparse.ArgumentParser(description="Run one benchmark scenario for one library.")
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--jobs", type=int, default=0, help="0 = the scenario's default")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--results-key", default=DEFAULT_RESULTS_KEY)
    parser.add_argument("--timeout", type=float, default=100.0, help="seconds to wait for jobs")
    parser.add_argument("--rate", type=float, default=100.0, help="scenario C jobs/s")
    ns = parser.parse_args(argv)
    if redis_location(ns.redis_url)[2] == 0:
        parser.error("refusing to use Redis db 0; pass a dedicated db such as /14")
    return BenchArgs(
        scenario=ns.scenario,
        jobs=ns.jobs or DEFAULT_JOBS[ns.scenario],
        concurrency=ns.concurrency,
        redis_url=ns.redis_url,
        results_key=ns.results_key,
        timeout_s=ns.timeout,
        rate=ns.rate,
    )


# --------------------------------------------------------------------------- metrics


def parse_stamps(raw: Sequence[bytes]) -> list[tuple[float, float]]:
    pairs = []
    for item in raw:
        enq, start = item.decode().split(",")
        pairs.append((float(enq), float(start)))
    return pairs


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    rank = max(1, min(len(sorted_values), math.ceil(pct / 100.0 * len(sorted_values))))
    return sorted_values[rank - 1]


def throughput_metrics(pairs: Sequence[tuple[float, float]], jobs: int) -> dict[str, float]:
    starts = [start for _, start in pairs]
    span = max(starts) - min(starts)
    return {"process_s": span, "throughput": jobs / span if span > 0 else float("inf")}


def efficiency_metrics(
    pairs: Sequence[tuple[float, float]], jobs: int, concurrency: int
) -> dict[str, float]:
    starts = [start for _, start in pairs]
    ideal = jobs * JOB_SLEEP_S / concurrency
    actual = max(starts) + JOB_SLEEP_S - min(starts)
    return {"ideal_s": ideal, "actual_s": actual, "efficiency": ideal / actual}


def wait_metrics(pairs: Sequence[tuple[float, float]]) -> dict[str, float]:
    waits = sorted((start - enq) * 1000.0 for enq, start in pairs)
    return {
        "wait_p50_ms": percentile(waits, 50),
        "wait_p95_ms": percentile(waits, 95),
        "wait_p99_ms": percentile(waits, 99),
        "wait_max_ms": waits[-1],
        "wait_mean_ms": sum(waits) / len(waits),
    }


# --------------------------------------------------------------------------- worker process


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (Linux /proc walk)."""
    children = _children_map()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


class WorkerProcess:
    """The library's worker, run as a child process in its own process group.

    Output goes to a temp log file. Stopping kills the whole group, so worker pools that
    respawn children (rq, celery, dramatiq, taskiq) cannot leave stragglers behind.
    """

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        self.proc = subprocess.Popen(
            command,
            cwd=ADAPTERS_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace_s: float = 3.0) -> None:
        pgid = self.proc.pid
        stragglers = process_tree(pgid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        for pid in stragglers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def log_tail(self, size: int = 1500) -> str:
        self._log.seek(0, os.SEEK_END)
        length = self._log.tell()
        self._log.seek(max(0, length - size))
        return self._log.read().decode(errors="replace")


def worker_environment(adapter: Adapter, args: BenchArgs) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            ENV_REDIS_URL: args.redis_url,
            ENV_RESULTS_KEY: args.results_key,
            ENV_SLEEP: repr(args.sleep_s),
            ENV_CONCURRENCY: str(args.concurrency),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ADAPTERS_DIR), env.get("PYTHONPATH", "")) if p
            ),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(adapter.worker_env)
    return env


class BenchFailure(RuntimeError):
    """A scenario that could not complete (timeout, dead worker, ...)."""


async def wait_for_results(
    resp: Resp, key: str, target: int, worker: WorkerProcess | None, deadline: float
) -> int:
    """Poll LLEN until ``target`` results are in; bounded by ``deadline`` (monotonic)."""
    count = 0
    while time.monotonic() < deadline:
        count = resp.command("LLEN", key)
        if count >= target:
            return int(count)
        if worker is not None and not worker.alive():
            raise BenchFailure(f"worker exited early with code {worker.proc.returncode}")
        await asyncio.sleep(0.02)
    raise BenchFailure(f"timed out with {count}/{target} results")


def read_results(resp: Resp, key: str, jobs: int, out: dict[str, Any]) -> list[tuple[float, float]]:
    """All result pairs; more than ``jobs`` of them (a redelivery, a stray writer) is flagged."""
    pairs = parse_stamps(resp.command("LRANGE", key, "0", "-1"))
    out["completed"] = len(pairs)
    if len(pairs) != jobs:
        out["unexpected_results"] = len(pairs) - jobs
    return pairs


# --------------------------------------------------------------------------- scenarios


async def enqueue_all(producer: Producer, jobs: int) -> tuple[str, float]:
    stamps = [time.time() for _ in range(jobs)]
    started = time.perf_counter()
    mode = await producer.enqueue_many(stamps)
    return mode, time.perf_counter() - started


async def enqueue_sequential(producer: Producer, jobs: int) -> float:
    started = time.perf_counter()
    for _ in range(jobs):
        await producer.enqueue_one(time.time())
    return time.perf_counter() - started


async def enqueue_paced(producer: Producer, jobs: int, rate: float) -> dict[str, float]:
    """Enqueue ``jobs`` at a steady ``rate`` per second; report how well the pace was held."""
    begin = time.monotonic()
    max_lag = 0.0
    for index in range(jobs):
        delay = begin + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            max_lag = max(max_lag, -delay)
        await producer.enqueue_one(time.time())
    elapsed = time.monotonic() - begin
    return {"achieved_rate": jobs / elapsed, "producer_lag_max_ms": max_lag * 1000.0}


async def backlog_then_work(
    adapter: Adapter, args: BenchArgs, resp: Resp, env: dict[str, str]
) -> dict[str, Any]:
    """Scenarios A and B: enqueue everything, then start the worker and wait."""
    mode, enqueue_s = await enqueue_all(adapter.producer, args.jobs)
    out: dict[str, Any] = {
        "enqueue_mode": mode,
        "enqueue_s": enqueue_s,
        "enqueue_rate": args.jobs / enqueue_s,
    }
    worker = WorkerProcess(adapter.worker_command, env)
    try:
        deadline = time.monotonic() + args.timeout_s
        await wait_for_results(resp, args.results_key, args.jobs, worker, deadline)
    except BenchFailure as exc:
        raise BenchFailure(f"{exc}; worker log: {worker.log_tail()}") from None
    finally:
        worker.stop()
    pairs = read_results(resp, args.results_key, args.jobs, out)
    out.update(throughput_metrics(pairs, args.jobs))
    if args.scenario == "B":
        out.update(efficiency_metrics(pairs, args.jobs, args.concurrency))
    return out


async def warm_up(adapter: Adapter, args: BenchArgs, resp: Resp, worker: WorkerProcess) -> None:
    """Wait until the worker has run one job, then clear the results and let it go idle."""
    await adapter.producer.enqueue_one(WARMUP_MARK)
    deadline = time.monotonic() + min(60.0, args.timeout_s)
    await wait_for_results(resp, args.results_key, 1, worker, deadline)
    await asyncio.sleep(1.0)
    resp.command("DEL", args.results_key)


async def steady_load(
    adapter: Adapter, args: BenchArgs, resp: Resp, env: dict[str, str]
) -> dict[str, Any]:
    """Scenario C: idle worker, producer at a steady rate, measure queue wait."""
    worker = WorkerProcess(adapter.worker_command, env)
    try:
        await warm_up(adapter, args, resp, worker)
        out: dict[str, Any] = {"rate": args.rate, "enqueue_mode": "loop"}
        out.update(await enqueue_paced(adapter.producer, args.jobs, args.rate))
        deadline = time.monotonic() + args.timeout_s
        await wait_for_results(resp, args.results_key, args.jobs, worker, deadline)
    except BenchFailure as exc:
        raise BenchFailure(f"{exc}; worker log: {worker.log_tail()}") from None
    finally:
        worker.stop()
    out.update(wait_metrics(read_results(resp, args.results_key, args.jobs, out)))
    return out


async def enqueue_only(adapter: Adapter, args: BenchArgs) -> dict[str, Any]:
    """Scenario D: one-by-one enqueue, no worker."""
    elapsed = await enqueue_sequential(adapter.producer, args.jobs)
    return {
        "enqueue_mode": "loop",
        "enqueue_s": elapsed,
        "enqueue_rate": args.jobs / elapsed,
        "completed": 0,
    }


async def run_scenario(adapter: Adapter, args: BenchArgs, resp: Resp) -> dict[str, Any]:
    env = worker_environment(adapter, args)
    await adapter.producer.open()
    try:
        if args.scenario in ("A", "B"):
            return await backlog_then_work(adapter, args, resp, env)
        if args.scenario == "C":
            return await steady_load(adapter, args, resp, env)
        return await enqueue_only(adapter, args)
    finally:
        await adapter.producer.close()


def base_record(adapter: Adapter, args: BenchArgs) -> dict[str, Any]:
    return {
        "lib": adapter.lib,
        "lib_version": adapter.version,
        "scenario": args.scenario,
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "ok": False,
        "error": None,
        "notes": adapter.notes,
    }


def _terminate(signum: int, _frame: Any) -> None:
    """Turn SIGTERM/SIGINT into an exception so ``finally`` blocks stop the worker group."""
    raise SystemExit(128 + signum)


def main(build: Any, argv: Sequence[str] | None = None) -> int:
    """Entry point of every Python adapter: ``main(build_adapter)``.

    ``build`` is called with the parsed :class:`BenchArgs` and returns an :class:`Adapter`.
    Prints exactly one JSON line on stdout; exit code 0 when the scenario succeeded.
    """
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    adapter: Adapter = build(args)
    record = base_record(adapter, args)
    started = time.perf_counter()
    resp = Resp(args.redis_url)
    try:
        resp.command("FLUSHDB")
        record.update(asyncio.run(run_scenario(adapter, args, resp)))
        record["ok"] = True
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"[:4000]
    finally:
        record["wall_s"] = time.perf_counter() - started
        with contextlib.suppress(Exception):
            resp.command("FLUSHDB")
        resp.close()
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
    return 0 if record["ok"] else 1
