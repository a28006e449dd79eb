"""Overload and soak: Sluice as real processes on a private Redis, for many minutes.

* Overload: open-loop traffic at 3x the measured capacity for ``SLUICE_OVERLOAD_S``
  (default 300 s). Memory stays bounded, intake stays fast, the alerts fire in the order an
  operator should see them (queue wait warning, queue wait critical, utilization), nothing is
  lost, and the backlog drains at full rate afterwards.
* Soak: the load-test customers at 30 msg/s for ``SLUICE_SOAK_S`` (default 1800 s); worker
  and API resident memory and Redis ``used_memory`` stay flat (within 5 %) once retention
  has reached its steady state.

Both are marked ``soak`` (and ``slow``): ``make test-soak`` runs them, with the fake
Chatwoot's account webhook; ``SLUICE_LOAD_MODES=account,bot`` runs each with the agent bot
too (another 50 minutes). Each prints a figures line per phase; docs/reliability.md has the
last ones.

* The load test itself (``sluice loadtest``, :func:`sluice.loadtest.run_loadtest`), short,
  with each receiver and with a bot token: marked ``slow`` only (``make test-slow``).
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from rich.console import Console

from sluice.alerts.store import AlertStore
from sluice.keys import QueueKeys
from sluice.loadtest import LoadConfig, Tally, run_loadtest, start_customers
from sluice.queue.queue import Queue
from sluice.settings.config import load_settings
from sluice.simulator import Mode, TokenKind

from ..e2e.test_chatwoot_e2e import ACCOUNT
from ..integration.conftest import delete_queue_keys
from ..servers import RedisServer, rss_mb
from .conftest import MODES
from .system import ProcessSystem
from .test_faults import MODE_IDS, assert_invariant, settle

# The overload and the soak take many minutes each: the agent bot only when asked for.
LOAD_MODES = [m.strip() for m in os.environ.get("SLUICE_LOAD_MODES", "account").split(",")]
load_modes = pytest.mark.parametrize(
    "chatwoot_mode", [MODES[m] for m in LOAD_MODES], ids=LOAD_MODES
)

OVERLOAD_S = float(os.environ.get("SLUICE_OVERLOAD_S", "300"))
SOAK_S = float(os.environ.get("SLUICE_SOAK_S", "1800"))
SAMPLE_EVERY_S = 5.0

# Overload: 5 slots x 500 ms per message = 10 messages/s of capacity, one message per turn
# (SLUICE_BURST_MAX=1, otherwise a backlog in one conversation is answered in bursts and
# capacity grows with the backlog). The SLA budget is set far out so that the budget
# handoff (a policy: a late turn goes to a human) does not turn the backlog into handoffs;
# the queue-wait alerts have their own thresholds (5 s / 10 s).
OVERLOAD_SLOTS = 5
OVERLOAD_LATENCY_MS = 500.0
OVERLOAD_CAPACITY = OVERLOAD_SLOTS * 1000 / OVERLOAD_LATENCY_MS
OVERLOAD_FACTOR = 3.0
OVERLOAD_CONVERSATIONS = 300
# A normal minute at half capacity first: a real overload hits a system that was running,
# and the 5-minute utilization rule then sees the change as it would in production.
WARM_S = 60.0
WARM_FACTOR = 0.5
OVERLOAD_ENV = {
    "WORKER_CONCURRENCY": str(OVERLOAD_SLOTS),
    "SLUICE_BURST_MAX": "1",
    "SLA_WARNING_THRESHOLD": "3600000",
    "SLA_CRITICAL_THRESHOLD": "7200000",
    "SLUICE_ALERT_OLDEST_WAITING_CRITICAL_MS": "30000",
}

# Soak: retention short enough that finished timelines and dedupe records reach their
# steady state within the warm-up (both default to days, which a 30-minute run would see
# as growth by design).
SOAK_RATE = 30.0
SOAK_RETENTION_S = int(os.environ.get("SLUICE_SOAK_RETENTION_S", "300"))
SOAK_ENV = {
    "SLUICE_COMPLETED_RETENTION_S": str(SOAK_RETENTION_S),
    "SLUICE_DEDUPE_TTL_S": str(SOAK_RETENTION_S),
}
FLAT_TOLERANCE = 0.05


@dataclass
class Sample:
    at: float
    waiting: int
    completed: int
    redis_mb: float
    series_mb: float  # monitoring time series: kept for a fixed time, not per message
    worker_mb: float
    api_mb: float
    intake_ms: list[float] = field(default_factory=list)

    @property
    def data_mb(self) -> float:
        """Redis memory minus the monitoring time series: what scales with messages."""
        return self.redis_mb - self.series_mb


# Keys that hold monitoring time series: per-second counters (kept 2 h), 10 s buckets and
# minute roll-ups (kept 7 days). They grow with time until their retention, whatever the
# traffic, so the soak reports them apart from the data that scales with messages.
SERIES_PATTERNS = ("stats:*", "mon:10s:*", "mon:1m:*")


async def series_bytes(client: aioredis.Redis, queue: Queue) -> int:
    total = 0
    for pattern in SERIES_PATTERNS:
        async for key in client.scan_iter(match=queue.keys.prefix + pattern, count=1000):
            total += int(await client.memory_usage(key) or 0)
    return total


async def take_sample(
    system: ProcessSystem, client: aioredis.Redis, queue: Queue, started: float
) -> Sample:
    counts = await queue.counts()
    info = await client.info("memory")
    series = await series_bytes(client, queue)
    assert system.api is not None and system.worker is not None
    return Sample(
        at=time.monotonic() - started,
        waiting=int(counts.get("waiting", 0)) + int(counts.get("delayed", 0)),
        completed=int(counts.get("completed", 0)),
        redis_mb=int(info["used_memory"]) / 2**20,
        series_mb=series / 2**20,
        worker_mb=rss_mb(system.worker.pid),
        api_mb=rss_mb(system.api.pid),
    )


def progress(sample: Sample) -> str:
    """One line per sample, so a run of many minutes shows it is alive."""
    return (
        f"t={sample.at:.0f}s waiting={sample.waiting} completed={sample.completed} "
        f"redis={sample.redis_mb:.2f}MB series={sample.series_mb:.3f}MB "
        f"worker={sample.worker_mb:.1f}MB api={sample.api_mb:.1f}MB"
    )


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, without persistence, so used_memory is Sluice's alone."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop("kill")


@pytest.fixture
async def client(private_redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    await asyncio.to_thread(private_redis.wait_ready)
    redis_client = aioredis.Redis.from_url(private_redis.url)
    try:
        yield redis_client
    finally:
        await redis_client.aclose()


async def open_loop(
    system: ProcessSystem,
    conversations: list[int],
    rate: float,
    duration_s: float,
    latencies_ms: list[float],
) -> int:
    """Customers write at ``rate`` messages/s whatever happens to earlier ones, each into a
    random conversation; returns how many were sent. ``latencies_ms`` gets the time each
    webhook took to be answered by the intake (one attempt: Chatwoot's retries are for
    429/500, which the intake does not answer while Redis is up)."""
    rng = random.Random(5)
    interval = 1.0 / rate
    pending: set[asyncio.Task[None]] = set()
    sent = 0

    async def one(conversation: int, n: int) -> None:
        started = time.monotonic()
        await system.sim.customer_message(ACCOUNT, conversation, f"overload line {n}")
        latencies_ms.append((time.monotonic() - started) * 1000)

    began = time.monotonic()
    while (now := time.monotonic()) - began < duration_s:
        due = began + sent * interval
        if due > now:
            await asyncio.sleep(due - now)
        sent += 1
        task = asyncio.create_task(one(rng.choice(conversations), sent))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    return sent


async def first_firing(store: AlertStore) -> dict[tuple[str, str], float]:
    """(rule, severity) -> when it first fired or escalated to that severity."""
    seen: dict[tuple[str, str], float] = {}
    for entry in sorted(await store.history(limit=1000), key=lambda e: e.at):
        if entry.event in ("firing", "escalated", "refiring") and entry.severity is not None:
            seen.setdefault((entry.rule, str(entry.severity)), entry.at)
    return seen


@pytest.mark.slow
@pytest.mark.soak
@load_modes
@pytest.mark.timeout(OVERLOAD_S * 12 + 300)
async def test_overload_three_times_capacity(
    private_redis: RedisServer,
    client: aioredis.Redis,
    queue_name: str,
    tmp_path: Path,
    chatwoot_mode: Mode,
) -> None:
    queue = Queue(queue_name, redis=client)
    store = AlertStore(client, QueueKeys(queue_name))
    cfg = LoadConfig(broker_latency_ms=OVERLOAD_LATENCY_MS, mode=chatwoot_mode)
    offered = OVERLOAD_CAPACITY * OVERLOAD_FACTOR
    async with ProcessSystem(
        private_redis.url, queue_name, tmp_path, cfg=cfg, env=OVERLOAD_ENV
    ) as system:
        conversations = [
            await system.sim.create_conversation(ACCOUNT) for _ in range(OVERLOAD_CONVERSATIONS)
        ]
        started = time.monotonic()
        samples = [await take_sample(system, client, queue, started)]
        latencies: list[float] = []
        warm = await open_loop(
            system, conversations, OVERLOAD_CAPACITY * WARM_FACTOR, WARM_S, latencies
        )
        overload_start = await take_sample(system, client, queue, started)
        samples.append(overload_start)
        wall_start = time.time()
        sender = asyncio.create_task(
            open_loop(system, conversations, offered, OVERLOAD_S, latencies)
        )
        latencies.clear()
        while not sender.done():
            await asyncio.wait({sender}, timeout=SAMPLE_EVERY_S)
            sample = await take_sample(system, client, queue, started)
            sample.intake_ms, latencies[:] = list(latencies), []
            samples.append(sample)
            print(f"  [overload] {progress(sample)}")
        sent = warm + sender.result()
        overload_end = samples[-1]
        # Drain: no more traffic; the backlog is worked off.
        while (last := samples[-1]).waiting > 0:
            await asyncio.sleep(SAMPLE_EVERY_S)
            samples.append(await take_sample(system, client, queue, started))
            assert last.at < OVERLOAD_S * 10, "the backlog did not drain"
        drained = samples[-1]
        await system.sim.flush(timeout=120)
        figures, settle_s = await settle(system.sim, queue, conversations, 120)
        fired = await first_firing(store)

    in_overload = [s for s in samples if overload_start.at < s.at <= overload_end.at]
    steady = [s for s in in_overload if s.at >= overload_start.at + 30]  # past the ramp
    overload_rate = (steady[-1].completed - steady[0].completed) / (steady[-1].at - steady[0].at)
    drain_rate = (drained.completed - overload_end.completed) / (drained.at - overload_end.at)
    intake = [ms for s in in_overload for ms in s.intake_ms]
    per_waiting_kb = (
        (overload_end.redis_mb - overload_start.redis_mb)
        * 1024
        / max(1, overload_end.waiting - overload_start.waiting)
    )
    order = [
        ("queue_wait_high", "warning"),
        ("queue_wait_high", "critical"),
        ("worker_utilization_high", "warning"),
    ]
    fired_at = {f"{r}:{s}": round(fired[(r, s)] - wall_start, 1) for r, s in fired}
    print(
        f"\n[overload] warm={OVERLOAD_CAPACITY * WARM_FACTOR:.0f}/s for {WARM_S:.0f}s "
        f"then offered={offered:.0f}/s for {OVERLOAD_S:.0f}s sent={sent} "
        f"capacity={OVERLOAD_CAPACITY:.0f}/s measured={overload_rate:.2f}/s "
        f"backlog_peak={overload_end.waiting} drain_rate={drain_rate:.2f}/s "
        f"drain_s={drained.at - overload_end.at:.0f} "
        f"intake_ms p50={pct(intake, 0.5):.1f} p99={pct(intake, 0.99):.1f} "
        f"max={max(intake, default=0):.1f} "
        f"worker_rss_mb={samples[0].worker_mb:.1f}->{max(s.worker_mb for s in samples):.1f} "
        f"api_rss_mb={samples[0].api_mb:.1f}->{max(s.api_mb for s in samples):.1f} "
        f"redis_mb={samples[0].redis_mb:.1f}->{overload_end.redis_mb:.1f}->{drained.redis_mb:.1f} "
        f"redis_kb_per_waiting={per_waiting_kb:.2f} alerts_first_fired_s={fired_at}"
    )
    print(figures.line(f"overload-{MODE_IDS[chatwoot_mode]}") + f" settle={settle_s:.1f}s")
    assert_invariant(figures, chatwoot_mode)
    assert figures.sent == sent and figures.accepted == sent, "every webhook got its 2xx"
    # Capacity was saturated and the backlog drained at (at least) the same rate.
    assert overload_rate >= 0.9 * OVERLOAD_CAPACITY
    assert drain_rate >= 0.95 * overload_rate
    # Bounded: intake answers fast however long the backlog; memory per waiting message
    # is small and the worker does not grow with the backlog (it holds only its slots).
    assert pct(intake, 0.99) < 250
    assert per_waiting_kb < 4
    assert max(s.worker_mb for s in samples) - samples[1].worker_mb < 30
    times = [fired.get(key) for key in order]
    assert all(t is not None for t in times), f"alerts that fired: {sorted(fired)}"
    assert times == sorted(times), f"alert order {fired_at}"  # type: ignore[type-var]


def flat(values: list[float]) -> float:
    """Relative change from the first to the last third of a series' mean."""
    third = max(1, len(values) // 3)
    first, last = statistics.fmean(values[:third]), statistics.fmean(values[-third:])
    return (last - first) / first


@pytest.mark.slow
@pytest.mark.soak
@load_modes
@pytest.mark.timeout(SOAK_S + 300)
async def test_soak_thirty_messages_per_second(
    private_redis: RedisServer,
    client: aioredis.Redis,
    queue_name: str,
    tmp_path: Path,
    chatwoot_mode: Mode,
) -> None:
    queue = Queue(queue_name, redis=client)
    cfg = LoadConfig(conversations=200, rate=SOAK_RATE, broker_latency_ms=200, mode=chatwoot_mode)
    warmup_s = min(SOAK_RETENTION_S + 60.0, SOAK_S / 3)
    async with ProcessSystem(private_redis.url, queue_name, tmp_path, cfg=cfg, env=SOAK_ENV) as (
        system
    ):
        tally = Tally()
        stop = asyncio.Event()
        customers = start_customers(system.sim, cfg, tally, stop)
        started = time.monotonic()
        samples: list[Sample] = []
        while time.monotonic() - started < SOAK_S:
            await asyncio.sleep(SAMPLE_EVERY_S * 6)
            samples.append(sample := await take_sample(system, client, queue, started))
            print(f"  [soak] {progress(sample)} sent={tally.sent} replied={tally.replied}")
        stop.set()
        await asyncio.gather(*customers)
        await system.sim.flush(timeout=60)
        alive = system.alive()

    steady = [s for s in samples if s.at >= warmup_s]
    drift: dict[str, Any] = {
        name: flat([getattr(s, name) for s in steady])
        for name in ("worker_mb", "api_mb", "data_mb", "redis_mb")
    }
    minutes = (steady[-1].at - steady[0].at) / 60
    series_kb_per_min = (steady[-1].series_mb - steady[0].series_mb) * 1024 / minutes
    elapsed = time.monotonic() - started
    print(
        f"\n[soak-{MODE_IDS[chatwoot_mode]}] duration={SOAK_S:.0f}s "
        f"rate={tally.sent / elapsed:.1f}/s sent={tally.sent} "
        f"replied={tally.replied} missing={tally.missing} "
        f"sla_p99_ms={tally.sla_ms.percentile(99) or 0:.0f} "
        f"within_10s={tally.within(10_000)} warmup={warmup_s:.0f}s "
        + " ".join(
            f"{name}={getattr(steady[0], name):.2f}->{getattr(steady[-1], name):.2f}"
            f"({drift[name]:+.1%})"
            for name in drift
        )
        + f" series_kb_per_min={series_kb_per_min:.1f} alive={alive}"
    )
    assert alive == {"api": True, "worker": True}
    assert tally.missing == 0 and tally.sent > 0
    for name in ("worker_mb", "api_mb", "data_mb"):
        assert abs(drift[name]) <= FLAT_TOLERANCE, f"{name} drifted {drift[name]:+.1%}"
    # The time series grow by time, not by traffic, until their retention caps them.
    assert series_kb_per_min < 64


# The load test as `sluice loadtest` runs it, briefly: each receiver with a user token (in
# agent-bot mode Sluice posts as the bot, CHATWOOT_AGENT_BOT_ID), and the agent bot with its
# own token, which may not list messages (the reply guard falls back to the conversation).
LOADTEST_S = 8.0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "token_kind"),
    [("account_webhook", "user_admin"), ("agent_bot", "user_admin"), ("agent_bot", "bot")],
    ids=["account", "bot", "bot-token"],
)
async def test_loadtest_with_each_receiver(
    redis_url: str,
    redis_client: aioredis.Redis,
    queue_name: str,
    mode: Mode,
    token_kind: TokenKind,
) -> None:
    cfg = LoadConfig(
        conversations=30,
        rate=10.0,
        duration_s=LOADTEST_S,
        broker_latency_ms=20,
        reply_timeout_s=30,
        mode=mode,
        api_token_kind=token_kind,
    )
    settings = load_settings({"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name})
    console = Console(file=io.StringIO(), width=120)
    try:
        report = await run_loadtest(settings, redis_url, cfg, console, queue=queue_name)
    finally:
        await delete_queue_keys(redis_client, queue_name)
    chatwoot = report["chatwoot"]
    webhooks = chatwoot["webhooks"]
    name = "loadtest-bot-token" if token_kind == "bot" else f"loadtest-{MODE_IDS[mode]}"
    print(
        f"\n[{name}] sent={report['sent']} replied={report['replied']} "
        f"missing={report['missing']} duplicates={report['duplicate_replies']} "
        f"sla_p95_ms={report['sla_ms']['p95'] or 0:.0f} webhooks_sent={webhooks['sent']} "
        f"failed={webhooks['failed']} retried={webhooks['retried']} "
        f"by_event={webhooks['by_event']} requests={chatwoot['requests']}"
    )
    assert chatwoot["mode"] == mode
    assert report["sent"] > 0 and report["replied"] == report["sent"]
    assert report["missing"] == 0 and report["duplicate_replies"] == 0
    assert webhooks["failed"] == 0
    # Each receiver gets its own events: conversation_created reaches account webhooks only.
    assert ("conversation_created" in webhooks["by_event"]) is (mode == "account_webhook")
