"""`sluice loadtest` with every part in processes of its own, as an operator deploys them:
the Chatwoot simulator, the customers (one or more processes), the API
(``sluice serve --workers N``) and the workers (``sluice worker --processes P``).

The parent only orchestrates and measures: it starts the parts, waits until the API is ready
and every worker has registered, lets the customers run, then reads each part's CPU over the
load from ``/proc``, the Redis server's from ``INFO cpu``, what the customers saw, what the
simulator delivered (and why each failed delivery failed), and the queue's own windows.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from sluice.loadtest.config import LoadConfig
from sluice.loadtest.cpu import tree_cpu_seconds
from sluice.loadtest.parts import customers_main, merge_tallies, shares, simulator_main
from sluice.loadtest.report import summarize
from sluice.loadtest.system import simulator_config, system_env, wired_env
from sluice.monitor.windows import WindowReader
from sluice.queue.queue import Queue
from sluice.redis.pool import connect_from_settings
from sluice.service.runtime import queue_for
from sluice.settings.config import Settings, load_settings
from sluice.worker.registry import live_workers

STARTUP_S = 60.0  # how long a part may take to start before the run is abandoned


class PartFailed(RuntimeError):
    """A part of the load test did not start or stopped early; the message says which and
    where its log is."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _receive(conn: Connection, what: str, timeout: float) -> Any:  # noqa: ASYNC109
    ready = await asyncio.to_thread(conn.poll, timeout)
    if not ready:
        raise PartFailed(f"{what} did not answer within {timeout:.0f} s")
    try:
        return conn.recv()
    except EOFError:
        raise PartFailed(f"{what} exited without answering") from None


class _Command:
    """A Sluice command run as its own process, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sluice", *args],
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise PartFailed(
                f"{self.name} exited with {self.process.returncode}; see {self.log_path}"
            )

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
        self._log.close()


async def _until(check: Any, what: str, parts: list[_Command]) -> None:
    """Poll ``check`` (an async predicate) every 100 ms: process start-up has no event to
    await from another process; a part that exits ends the wait with its log named."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        for part in parts:
            part.check_running()
        if await check():
            return
        await asyncio.sleep(0.1)
    raise PartFailed(f"{what} not ready within {STARTUP_S:.0f} s")


async def run_loadtest_processes(
    settings: Settings,
    redis_url: str,
    cfg: LoadConfig,
    console: Console,
    *,
    queue: str | None = None,
    api_processes: int = 2,
    customer_processes: int = 1,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run the load test with every part in its own processes; the report of
    :func:`sluice.loadtest.run_loadtest` plus ``parts`` (processes and CPU of each)."""
    queue = queue or f"loadtest-{int(time.time())}"
    token, secret = secrets.token_hex(16), secrets.token_hex(16)
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    ctx = multiprocessing.get_context("spawn")
    logs = Path(tempfile.mkdtemp(prefix="sluice-loadtest-"))
    commands: list[_Command] = []
    spawned: list[BaseProcess] = []
    async with AsyncExitStack() as stack:

        async def stop_everything() -> None:
            for command in reversed(commands):
                await command.stop()
            sim_conn.close()  # a simulator still waiting for "stop" sees EOF and exits
            for process in spawned:
                await asyncio.to_thread(process.join, 10)
                if process.is_alive():  # customers of an aborted run
                    process.kill()
                    await asyncio.to_thread(process.join)

        sim_conn, sim_child = ctx.Pipe()
        stack.push_async_callback(stop_everything)

        # 1. The simulator, sending its webhooks to where the API will listen.
        sim_config = simulator_config(
            cfg, api_token=token, webhook_secret=cfg.simulator_secret or secret
        )
        sim_config.webhook_url = f"{api_url}/webhooks/chatwoot"
        simulator = ctx.Process(
            target=simulator_main, args=(sim_config, sim_child), name="sluice-loadtest-chatwoot"
        )
        simulator.start()
        spawned.append(simulator)
        _, sim_url, bot_id = await _receive(sim_conn, "the simulator", STARTUP_S)

        # 2. Sluice: the API processes and the worker processes, wired to it.
        wiring = system_env(sim_url, token, secret, cfg, queue, agent_bot_id=bot_id)
        env = wired_env(os.environ, extra_env, wiring) | {"REDIS_URL": redis_url}
        serve = ["serve", "--host", "127.0.0.1", "--port", str(api_port)]
        commands.append(_Command("api", [*serve, "--workers", str(api_processes)], env, logs))
        commands.append(
            _Command("workers", ["worker", "--processes", str(cfg.processes)], env, logs)
        )

        handle = await connect_from_settings(load_settings(env), redis_url)
        stack.push_async_callback(handle.close)
        redis = handle.client
        sluice_queue = queue_for(load_settings(env), redis)
        probe = await stack.enter_async_context(httpx.AsyncClient(timeout=2.0))

        async def api_ready() -> bool:
            try:
                return (await probe.get(f"{api_url}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        async def workers_ready() -> bool:
            workers = await live_workers(redis, sluice_queue.keys)
            return len(workers) >= cfg.processes

        await _until(api_ready, "the API", commands)
        await _until(workers_ready, "the workers", commands)

        # 3. The load: customer processes against the simulator.
        before = _cpu(simulator, commands)
        redis_cpu0 = await _redis_cpu(redis)
        wall0 = time.monotonic()
        conns: list[Connection] = []
        customer_pids: list[int] = []
        customer_cpu: list[float] = []
        for share in shares(cfg, customer_processes):
            parent_end, child_end = ctx.Pipe()
            process = ctx.Process(
                target=customers_main,
                args=(cfg, share, sim_url, token, child_end),
                name=f"sluice-loadtest-customers-{share.index}",
            )
            process.start()
            spawned.append(process)
            conns.append(parent_end)
            customer_pids.append(process.pid or 0)
        tallies = await _watch(console, cfg, sluice_queue, conns, customer_pids, customer_cpu)
        wall = time.monotonic() - wall0
        after = _cpu(simulator, commands)
        redis_cpu = await _redis_cpu(redis) - redis_cpu0

        sim_conn.send("stop")
        _, chatwoot, duplicates = await _receive(sim_conn, "the simulator", 30.0)
        tally = merge_tallies(tallies)
        # The buckets of every partition, under the hash tags its layout records.
        engines = await sluice_queue.current_engines()
        reader = WindowReader(redis, sluice_queue.keys, parts=[e.keys for e in engines])
        seconds = int(min(3600, max(60, (cfg.duration_s // 10 + 2) * 10)))
        window = await reader.window("run", seconds)
        report = summarize(cfg, tally, window, duplicates, chatwoot)
        parts = {
            name: _part_cpu(count, before.get(name), after.get(name), wall)
            for name, count in (
                ("simulator", 1),
                ("api", api_processes),
                ("workers", cfg.processes),
            )
        }
        parts["customers"] = _part_cpu(len(customer_pids), 0.0, sum(customer_cpu), wall)
        parts["redis"] = {"processes": 1, "cpu_s": redis_cpu, "cpu_percent": 100 * redis_cpu / wall}
        report["parts"] = parts
        report["instrument_loop_lag_ms"] = {
            "simulator": chatwoot.get("loop_lag_ms"),
            "customers": [t["loop_lag_ms"] for t in tallies],
        }
        report["load_wall_s"] = wall
        report["queue"] = queue
        report["customer_errors"] = tally.errors
        report["logs"] = str(logs)
        return report
    raise AssertionError("unreachable")  # pragma: no cover - the stack re-raises


def _cpu(simulator: BaseProcess, commands: list[_Command]) -> dict[str, float | None]:
    out = {"simulator": tree_cpu_seconds(simulator.pid or 0)}
    for command in commands:
        out[command.name] = tree_cpu_seconds(command.process.pid)
    return out


def _part_cpu(
    processes: int, before: float | None, after: float | None, wall: float
) -> dict[str, Any]:
    if before is None or after is None:
        return {"processes": processes, "cpu_s": None, "cpu_percent": None}
    used = after - before
    return {"processes": processes, "cpu_s": used, "cpu_percent": 100 * used / wall}


async def _redis_cpu(redis: Any) -> float:
    info = await redis.info("cpu")
    if "used_cpu_user" not in info:  # a cluster client answers per node
        info = {
            k: sum(v.get(k, 0) for v in info.values()) for k in ("used_cpu_user", "used_cpu_sys")
        }
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _watch(
    console: Console,
    cfg: LoadConfig,
    queue: Queue,
    conns: list[Connection],
    pids: list[int],
    cpu_out: list[float],
) -> list[dict[str, Any]]:
    """Show progress until every customer process has sent its tally; each process's CPU
    is read just before its tally (the process is still alive then)."""
    tallies: list[dict[str, Any]] = []
    started = time.monotonic()
    last_cpu = dict.fromkeys(pids, 0.0)
    waiting = dict(zip(pids, conns, strict=True))
    limit = cfg.duration_s + cfg.reply_timeout_s + 60.0
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        while waiting:
            if time.monotonic() - started > limit:
                raise PartFailed("the customers did not finish in time")
            for pid in list(waiting):
                last_cpu[pid] = tree_cpu_seconds(pid) or last_cpu[pid]
            done = await asyncio.to_thread(
                multiprocessing.connection.wait, list(waiting.values()), 0.5
            )
            for ready in done:
                pid = next(p for p, c in waiting.items() if c is ready)
                try:
                    kind, tally = waiting[pid].recv()
                except EOFError:
                    raise PartFailed(f"customer process {pid} exited without a tally") from None
                if kind != "tally":
                    raise PartFailed(f"customer process {pid} sent {kind!r}, not its tally")
                tallies.append(tally)
                cpu_out.append(last_cpu[pid])
                del waiting[pid]
            live.update(await _progress(queue, cfg, started, len(tallies), len(conns)))
    return tallies


async def _progress(
    queue: Queue, cfg: LoadConfig, started: float, finished: int, processes: int
) -> Table:
    table = Table(title="sluice loadtest (separate processes)", header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    left = max(0.0, cfg.duration_s - (time.monotonic() - started))
    table.add_row("load time left", f"{left:.0f} s")
    table.add_row("customer processes done", f"{finished} / {processes}")
    counts = await queue.counts()
    for name in ("waiting", "active", "completed", "dead"):
        if name in counts:
            table.add_row(f"queue {name}", str(counts[name]))
    return table
