"""The load test's own processes: the Chatwoot simulator, and the customers.

Each is the ``main`` of a process started with ``multiprocessing``'s *spawn* context (a
fresh interpreter: nothing of the parent's event loop or Redis connections is inherited)
and talks to the parent over a :class:`~multiprocessing.connection.Connection`:

- the simulator sends ``("ready", url, bot_id)``, serves until the parent sends ``"stop"``,
  then sends ``("stats", stats, duplicate_replies)``;
- a customer share sends ``("tally", tally)`` once its customers are done.

Kept apart from Sluice's own processes so the instrument does not share a core with the
system it measures (one process for all of them saturated at ~45 msg/s).
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import os
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from sluice.cli.common import run_async
from sluice.loadtest.config import LoadConfig
from sluice.loadtest.customers import Tally, start_customers
from sluice.loadtest.remote import RemoteSimulator
from sluice.monitor.histogram import Histogram
from sluice.simulator import ChatwootSimulator, SimulatorConfig

T = TypeVar("T")


@dataclass(frozen=True)
class CustomerShare:
    """One customer process's part of the load: ``conversations`` customers at ``rate``."""

    index: int
    conversations: int
    rate: float
    seed: int


def shares(cfg: LoadConfig, processes: int) -> list[CustomerShare]:
    """``cfg``'s customers split over ``processes`` (as evenly as whole customers allow, the
    rate in proportion), each with its own seed so no two processes write the same script."""
    processes = max(1, min(processes, cfg.conversations))
    base, extra = divmod(cfg.conversations, processes)
    out = []
    for index in range(processes):
        count = base + (index < extra)
        out.append(
            CustomerShare(index, count, cfg.rate * count / cfg.conversations, cfg.seed + index)
        )
    return out


def duplicate_replies(sim: ChatwootSimulator) -> int:
    """Replies posted twice for one turn (the same ``sluice_reply_id``)."""
    seen: Counter[str] = Counter()
    for account, conversation in list(sim.store.conversation_keys()):
        for reply in sim.replies(account, conversation):
            reply_id = (reply.get("content_attributes") or {}).get("sluice_reply_id")
            if reply_id:
                seen[reply_id] += 1
    return sum(n - 1 for n in seen.values() if n > 1)


def _run(main: Coroutine[Any, Any, T], name: str) -> T:
    """Run a part's coroutine on uvloop (as Sluice's commands do). With
    ``SLUICE_LOADTEST_PROFILE=<dir>`` the part runs under cProfile and leaves
    ``<dir>/<name>.prof``: the way to see what limits the instrument itself."""
    profile_dir = os.environ.get("SLUICE_LOADTEST_PROFILE")
    if not profile_dir:
        return run_async(lambda: main)
    profiler = cProfile.Profile()
    try:
        return profiler.runcall(run_async, lambda: main)
    finally:
        profiler.dump_stats(str(Path(profile_dir) / f"{name}.prof"))


def simulator_main(config: SimulatorConfig, conn: Connection) -> None:
    """The simulator process (see the module docstring for the protocol)."""
    _run(_serve_simulator(config, conn), "simulator")


async def _freeze_survivors(every_s: float = 2.0) -> None:
    """Move what survived so far out of the cyclic collector's reach (``gc.freeze``).

    The simulator keeps every conversation and message of the run, and a full collection
    walked all of them: pauses of ~300 ms that stopped every delivery and request of the
    process at once (measured with :class:`LoopLag`). Frozen objects are still freed by
    reference counting; only cycles among them would stay, which a load test can afford."""
    while True:
        await asyncio.sleep(every_s)  # a period, not a synchronisation
        gc.freeze()


class LoopLag:
    """How late a 10 ms timer fires on this process's event loop: when the instrument is
    the bottleneck, this is where it shows (every delay it adds lands in the SLA)."""

    def __init__(self) -> None:
        self.lag_ms = Histogram()
        self.lag_max_ms = 0.0
        self.gc_max_ms = 0.0  # the longest garbage collection, a stop-the-world pause
        self._gc_started = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_max_ms = max(self.gc_max_ms, (time.perf_counter() - self._gc_started) * 1000)

    def __enter__(self) -> LoopLag:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._probe()), loop.create_task(_freeze_survivors())]
        gc.callbacks.append(self._gc)
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        gc.callbacks.remove(self._gc)

    async def _probe(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(0.01)  # the probe itself: a timer's lateness is the lag
            late_ms = max(0.0, (time.monotonic() - started - 0.01) * 1000)
            self.lag_ms.observe(late_ms)
            self.lag_max_ms = max(self.lag_max_ms, late_ms)

    def summary(self) -> dict[str, float | None]:
        lag: dict[str, float | None] = {f"p{q}": self.lag_ms.percentile(q) for q in (50, 99)}
        return lag | {"max": self.lag_max_ms, "gc_max": self.gc_max_ms}


async def _serve_simulator(config: SimulatorConfig, conn: Connection) -> None:
    sim = ChatwootSimulator(config, webhook_log_size=1_000)
    try:
        url = await sim.serve()
        conn.send(("ready", url, sim.config.bot_id))
        with LoopLag() as lag:
            while await asyncio.to_thread(conn.recv) != "stop":
                pass
        with contextlib.suppress(TimeoutError):
            await sim.flush(timeout=10.0)
        stats = sim.stats() | {"loop_lag_ms": lag.summary()}
        conn.send(("stats", stats, duplicate_replies(sim)))
    finally:
        await sim.aclose()
        conn.close()


def customers_main(
    cfg: LoadConfig, share: CustomerShare, sim_url: str, token: str, conn: Connection
) -> None:
    """A customer process: ``share`` of the customers for ``cfg.duration_s``, then as long
    as ``cfg.reply_timeout_s`` for the last replies; sends its tally to the parent."""
    tally, lag = _run(_run_customers(cfg, share, sim_url, token), f"customers-{share.index}")
    conn.send(("tally", tally_to_dict(tally) | {"loop_lag_ms": lag}))
    conn.close()


async def _run_customers(
    cfg: LoadConfig, share: CustomerShare, sim_url: str, token: str
) -> tuple[Tally, dict[str, float | None]]:
    mine = replace(cfg, conversations=share.conversations, rate=share.rate, seed=share.seed)
    tally, stop = Tally(), asyncio.Event()
    with LoopLag() as lag:
        await _customers_for(mine, cfg, tally, stop, sim_url, token)
    return tally, lag.summary()


async def _customers_for(
    mine: LoadConfig, cfg: LoadConfig, tally: Tally, stop: asyncio.Event, sim_url: str, token: str
) -> Tally:
    async with RemoteSimulator(sim_url, token) as chatwoot:
        customers = start_customers(chatwoot, mine, tally, stop)
        await asyncio.sleep(cfg.duration_s)  # the load lasts this long: a duration, not a sync
        stop.set()
        _, pending = await asyncio.wait(customers, timeout=cfg.reply_timeout_s + 5.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*customers, return_exceptions=True)
        tally.errors += sum(
            1 for task in customers if not task.cancelled() and task.exception() is not None
        )
    return tally


def tally_to_dict(tally: Tally) -> dict[str, Any]:
    return {
        "sent": tally.sent,
        "replied": tally.replied,
        "missing": tally.missing,
        "turns": tally.turns,
        "bursts": tally.bursts,
        "errors": tally.errors,
        "samples": tally.samples,
        "elapsed_s": time.monotonic() - tally.started,
    }


def merge_tallies(parts: list[dict[str, Any]]) -> Tally:
    """One tally from the customer processes' (the SLA histogram rebuilt from samples)."""
    merged = Tally()
    for part in parts:
        merged.sent += part["sent"]
        merged.missing += part["missing"]
        merged.turns += part["turns"]
        merged.bursts += part["bursts"]
        merged.errors += part["errors"]
        for sample in part["samples"]:
            merged.record(sample)
    return merged
