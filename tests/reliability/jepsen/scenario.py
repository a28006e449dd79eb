"""One Jepsen run: start the cluster, let customers write while the nemesis works, heal,
let the system settle, then check the recorded history.

Settling has two steps. First every accepted message must be answered, dead or handed
off (test_faults.settle, bounded); then the queue must be empty (nothing waiting, running
or delayed), so that a stale runner still holding a turn has posted what it was going to
post before the replies are read. Then the recorder reads the stream to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from sluice.loadtest import LoadConfig
from sluice.queue.queue import Queue
from sluice.simulator import ChatwootSimulator

from ..test_faults import SETTLE_TIMEOUT_S, Sent, settle, start_writers
from .checker import CheckResult, check
from .cluster import Cluster
from .history import Recorder, observe
from .nemesis import GAP_S, WEIGHTS, Nemesis

QUIET_TIMEOUT_S = 60.0  # after settling, the queue empties within this


@dataclass(frozen=True)
class RunConfig:
    seed: int
    duration_s: float
    conversations: int = 30
    workers: int = 3
    gap_s: tuple[float, float] = GAP_S
    weights: Mapping[str, int] = field(default_factory=lambda: dict(WEIGHTS))
    broker_latency_ms: float = 200.0
    expect_fencing: bool = True


@dataclass
class RunOutcome:
    result: CheckResult
    settle_s: float
    quiet: bool  # the queue emptied after settling
    restarted: list[str]  # processes that had died on their own and had to be started
    reconnects: int  # times the recorder lost Redis (each Redis restart, at least)

    def report(self, config: RunConfig) -> str:
        label = (
            f"jepsen seed={config.seed} {config.duration_s:.0f}s "
            f"turn={config.broker_latency_ms:.0f}ms"
        )
        extra = (
            f"  settled in {self.settle_s:.1f}s, queue empty: {self.quiet}, "
            f"died on their own: {self.restarted or 'none'}, "
            f"recorder reconnects: {self.reconnects}"
        )
        return self.result.report(label) + "\n" + extra


async def wait_until_quiet(queue: Queue, sim: ChatwootSimulator, limit_s: float) -> bool:
    """Wait until nothing is waiting, running or delayed; False if that took too long."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        counts = await queue.counts()
        if not (counts["waiting"] or counts["active"] or counts["delayed"]):
            return True
        # Woken by the next Chatwoot API call (a reply); acks touch only Redis: the bound.
        with contextlib.suppress(TimeoutError):
            await sim.wait_for_activity(timeout=0.5)
    return False


async def run_jepsen(directory: Path, config: RunConfig) -> RunOutcome:
    """Run one seed and check it; the outcome holds the figures and the violations."""
    queue_name = f"jepsen-{config.seed}"
    cfg = LoadConfig(broker_latency_ms=config.broker_latency_ms, seed=config.seed)
    async with Cluster(directory, queue_name, workers=config.workers, cfg=cfg) as cluster:
        recorder = Recorder(cluster.redis_url, queue_name)
        recording = asyncio.create_task(recorder.run(), name="jepsen recorder")
        client = aioredis.Redis.from_url(cluster.redis_url)
        # The checker reads every job's transitions (off by default: Queue.set_events). Its
        # own client: a connection opened now would be cut by the nemesis's restarts.
        setup = aioredis.Redis.from_url(cluster.redis_url)
        await Queue(queue_name, redis=setup).set_events(True)
        await setup.aclose()
        try:
            stop = asyncio.Event()
            sent: list[Sent] = []
            sim = cluster.sim
            conversations, writers = await start_writers(
                sim, config.conversations, stop, sent, config.seed
            )
            nemesis = Nemesis(cluster, config.seed, gap_s=config.gap_s, weights=config.weights)
            try:
                faults = await nemesis.run(config.duration_s)
            finally:
                stop.set()
                await asyncio.gather(*writers)
            restarted = await cluster.ensure_running()
            await sim.flush(timeout=60)
            direct = Queue(queue_name, redis=client)
            _, settle_s = await settle(sim, direct, conversations, SETTLE_TIMEOUT_S)
            quiet = await wait_until_quiet(direct, sim, QUIET_TIMEOUT_S)
            await recorder.caught_up()
            observed = await observe(sim, direct, conversations, recorder.gaps)
        finally:
            recording.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recording
            await client.aclose()
    result = check(recorder.events, observed, faults, expect_fencing=config.expect_fencing)
    return RunOutcome(result, settle_s, quiet, restarted, recorder.reconnects)
