"""SLA windows and percentiles from the aggregates the scripts write, on known inputs."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from sluice import Completion, Queue
from sluice.monitor.histogram import bucket_of
from sluice.monitor.snapshot import Monitor, burn_rate, capacity_per_s, drain_seconds
from sluice.monitor.windows import WindowReader


async def finish(queue: Queue, sla_ms: list[float], fail_first: int = 0) -> None:
    """Enqueue one message per SLA value with source_created set so that reply_sent -
    source_created equals that value exactly, and complete them all."""
    now = time.time() * 1000
    for n in range(len(sla_ms)):
        await queue.enqueue(f"c{n}", {}, hops={"source_created": now - 100_000, "received": now})
    jobs = (await queue.reserve(len(sla_ms), worker_id="w")).jobs
    by_key = {j.key: j for j in jobs}
    for n in range(fail_first):
        await queue.fail(by_key[f"c{n}"], "boom", backoff_ms=0, retryable=False)
    done = [
        Completion(by_key[f"c{n}"].id, by_key[f"c{n}"].token, {"reply_sent": now - 100_000 + sla})
        for n, sla in enumerate(sla_ms)
        if n >= fail_first
    ]
    await queue.complete(done, worker_id="w")


async def test_sla_percentiles_verdicts_and_compliance(queue: Queue) -> None:
    slas = [1_000.0] * 90 + [15_000.0] * 8 + [45_000.0] * 2
    await finish(queue, slas)
    monitor = Monitor(queue)
    w1 = (await monitor.windows())["1m"]
    assert (w1.get("ok"), w1.get("warn"), w1.get("crit")) == (90, 8, 2)
    assert w1.compliance("warning") == pytest.approx(0.90)
    assert w1.compliance("critical") == pytest.approx(0.98)
    assert w1.sla.percentile(50) == pytest.approx(1_000, rel=0.025)
    assert w1.sla.percentile(95) == pytest.approx(15_000, rel=0.025)
    assert w1.sla.percentile(99) == pytest.approx(45_000, rel=0.025)
    assert w1.mean("ss") == pytest.approx(sum(slas) / len(slas), rel=1e-3)
    assert w1.throughput == pytest.approx(100 / 60)
    assert w1.get("enq") == 100


async def test_failure_rate_and_dead_letters(queue: Queue) -> None:
    await finish(queue, [500.0] * 10, fail_first=2)
    w5 = (await Monitor(queue).windows())["5m"]
    assert (w5.completed, w5.failed, w5.get("dead")) == (8, 2, 2)
    assert w5.failure_rate == pytest.approx(0.2)


async def test_monitoring_off_writes_no_aggregates(
    redis_client: aioredis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, redis=redis_client, monitoring=False)
    try:
        await finish(queue, [100.0])
        w1 = (await Monitor(queue).windows())["1m"]
        assert w1.completed == 0
        assert (await queue.counts())["completed"] == 1
    finally:
        from .conftest import delete_queue_keys

        await delete_queue_keys(redis_client, queue_name)


async def test_clock_skew_never_makes_a_negative_duration(queue: Queue) -> None:
    now = time.time() * 1000
    # The source claims the message was written 5 s in the future.
    await queue.enqueue("c", {}, hops={"source_created": now + 5_000, "received": now})
    job = (await queue.reserve(1, worker_id="w")).jobs[0]
    _, _, finished = await queue.complete([Completion(job.id, job.token, {})], worker_id="w")
    assert finished[0].sla_ms >= 0
    w1 = (await Monitor(queue).windows())["1m"]
    assert w1.get("skew") == 1


async def test_window_boundaries_with_an_injected_clock(queue: Queue) -> None:
    """A W-second window is the current 10 s bucket and the W/10 - 1 before it."""
    t = 1_800_000_000.0  # a fixed 'now', far from the real clock's buckets
    prefix = queue.keys.prefix
    for age_s, count in ((0, 1), (30, 2), (45, 4), (70, 8), (280, 16), (310, 32)):
        await queue.redis.hset(
            f"{prefix}mon:10s:{int((t - age_s) // 10)}", mapping={"n": count, "ok": count}
        )
    reader = WindowReader(queue.redis, queue.keys, clock=lambda: t)
    windows = await reader.windows({"1m": 60, "5m": 300})
    assert windows["1m"].completed == 1 + 2 + 4
    assert windows["5m"].completed == 1 + 2 + 4 + 8 + 16


async def test_rollup_folds_minutes_once(queue: Queue) -> None:
    t = 1_800_000_000.0 - (1_800_000_000 % 60) + 120.0  # two minutes into an hour
    prefix = queue.keys.prefix
    minute = int((t - 120) // 60)
    for i in range(6):
        await queue.redis.hset(
            f"{prefix}mon:10s:{minute * 6 + i}", mapping={"n": 1, f"s:{bucket_of(2000)}": 1}
        )
    reader = WindowReader(queue.redis, queue.keys, clock=lambda: t, server_clock=fixed(t))
    assert await reader.rollup() >= 1
    rolled = await queue.redis.hgetall(f"{prefix}mon:1m:{minute}")
    assert int(rolled[b"n"]) == 6 and int(rolled[f"s:{bucket_of(2000)}".encode()]) == 6
    assert await reader.rollup() == 0  # idempotent
    six_hours = await reader.windows({"6h": 21_600})
    assert six_hours["6h"].completed == 6


def fixed(t: float) -> Callable[[], Awaitable[float]]:
    async def now() -> float:
        return t

    return now


async def test_a_host_clock_ahead_does_not_roll_up_an_unfinished_minute(queue: Queue) -> None:
    """Buckets are stamped with Redis's clock; a reader whose host clock runs 90 s ahead
    must not fold the current minute (and the one before) while they still fill."""
    seconds, _ = await queue.redis.time()
    minute = int(seconds) // 60
    reader = WindowReader(queue.redis, queue.keys, clock=lambda: float(seconds) + 90)
    await reader.rollup()
    prefix = queue.keys.prefix
    assert not await queue.redis.exists(f"{prefix}mon:1m:{minute}")


def test_derived_figures() -> None:
    assert capacity_per_s(10, 200.0) == pytest.approx(50.0)
    assert capacity_per_s(0, 200.0) is None
    assert drain_seconds(100, 30.0, 10.0) == pytest.approx(5.0)
    assert drain_seconds(100, 10.0, 30.0) is None
    assert drain_seconds(0, None, 5.0) == 0.0
    from sluice.monitor.windows import WindowStats

    stats = WindowStats("5m", 300, counters={"n": 100, "ok": 90, "warn": 10})
    assert burn_rate(stats, 0.95) == pytest.approx(2.0)
