"""Sliding windows over the monitoring buckets that every process writes into Redis.

A window of W seconds is the current 10-second bucket and the W/10 − 1 before it, so it
covers between W − 10 and W seconds; windows longer than 2 hours read the 1-minute
roll-ups. Everything is derived from counts and sums, so any process computes the same
numbers and no samples are kept. A partitioned queue's scripts write each partition's own
buckets; a window sums them over every partition (docs/partitions.md).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sluice.keys import QueueKeys
from sluice.monitor.histogram import Histogram
from sluice.queue.scripts import Scripts
from sluice.redis.cluster import RedisClient

FINE_S = 10
COARSE_S = 60
FINE_RETENTION_S = 7200
STANDARD_WINDOWS: Mapping[str, int] = {"1m": 60, "5m": 300, "1h": 3600}


@dataclass
class WindowStats:
    """Aggregates of one window; derived figures are properties."""

    name: str
    seconds: int
    counters: dict[str, int] = field(default_factory=dict)
    wait: Histogram = field(default_factory=Histogram)
    sla: Histogram = field(default_factory=Histogram)
    processing: Histogram = field(default_factory=Histogram)

    def get(self, name: str) -> int:
        return self.counters.get(name, 0)

    @property
    def completed(self) -> int:
        return self.get("n")

    @property
    def failed(self) -> int:
        return self.get("fail")

    def compliance(self, threshold: str = "warning") -> float | None:
        """Share of finished messages within the warning (or critical) threshold."""
        if not self.completed:
            return None
        within = self.get("ok") + (self.get("warn") if threshold == "critical" else 0)
        return within / self.completed

    @property
    def failure_rate(self) -> float | None:
        attempts = self.completed + self.failed
        return self.failed / attempts if attempts else None

    @property
    def throughput(self) -> float:
        return self.completed / self.seconds

    @property
    def arrival_rate(self) -> float:
        return self.get("enq") / self.seconds

    @property
    def utilization(self) -> float | None:
        capacity = self.get("cap")
        return min(1.0, self.get("busy") / capacity) if capacity else None

    def mean(self, sum_field: str, count_field: str = "n") -> float | None:
        count = self.get(count_field)
        return self.get(sum_field) / count if count else None

    def breakdown(self) -> dict[str, float | None]:
        """Where the time goes, mean ms per hop (None without data)."""
        return {
            "intake_lag": self.mean("ls"),
            "queue_wait": self.mean("ws"),
            "handling": self.mean("hs", "hn"),
            "reply": self.mean("rs", "rn"),
            "processing": self.mean("ps"),
            "sla": self.mean("ss"),
        }

    def summary(self) -> dict[str, object]:
        return {
            "window": self.name,
            "completed": self.completed,
            "failed": self.failed,
            "dead": self.get("dead"),
            "enqueued": self.get("enq"),
            "sla_compliance": {
                "within_warning": self.compliance("warning"),
                "within_critical": self.compliance("critical"),
            },
            "verdicts": {
                "ok": self.get("ok"),
                "warning": self.get("warn"),
                "critical": self.get("crit"),
            },
            "queue_wait_ms": _percentiles(self.wait),
            "sla_duration_ms": _percentiles(self.sla),
            "processing_ms": _percentiles(self.processing),
            "throughput_per_s": self.throughput,
            "arrival_per_s": self.arrival_rate,
            "failure_rate": self.failure_rate,
            "utilization": self.utilization,
            "breakdown_ms": self.breakdown(),
            "clock_skewed_messages": self.get("skew"),
        }


def _percentiles(hist: Histogram) -> dict[str, float | None]:
    return {"p50": hist.percentile(50), "p95": hist.percentile(95), "p99": hist.percentile(99)}


def parse_bucket(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in raw.items() if not k.startswith(b"_")}


def combine(name: str, seconds: int, buckets: Sequence[Mapping[str, int]]) -> WindowStats:
    stats = WindowStats(name=name, seconds=seconds)
    for bucket in buckets:
        for key, value in bucket.items():
            kind, sep, _ = key.partition(":")
            if sep and kind in ("w", "s", "p"):
                continue
            stats.counters[key] = stats.counters.get(key, 0) + value
        stats.wait.merge(Histogram.from_fields(bucket, "w"))
        stats.sla.merge(Histogram.from_fields(bucket, "s"))
        stats.processing.merge(Histogram.from_fields(bucket, "p"))
    return stats


class WindowReader:
    """Reads windows of one queue, summed over its partitions: ``parts``, the keys of each
    (an engine's ``keys``, or :meth:`sluice.queue.layout.Layout.keys`: only the layout knows
    a partition's hash tag); None: ``keys`` alone, an unpartitioned queue. ``clock`` (the
    reader's) and ``server_clock`` (Redis's, which decides when a minute is finished) are
    injectable for tests."""

    def __init__(
        self,
        redis: RedisClient,
        keys: QueueKeys,
        clock: Callable[[], float] = time.time,
        server_clock: Callable[[], Awaitable[float]] | None = None,
        parts: Sequence[QueueKeys] | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.parts = list(parts) if parts else [keys]
        self.clock = clock
        self.server_clock = server_clock or (lambda: server_time(redis))

    async def window(self, name: str, seconds: int) -> WindowStats:
        return (await self.windows({name: seconds}))[name]

    async def windows(self, spec: Mapping[str, int] = STANDARD_WINDOWS) -> dict[str, WindowStats]:
        """Several windows from one pipelined read of the buckets they need."""
        now = self.clock()
        current = int(now // FINE_S)
        fine_needed = max((s for s in spec.values() if s <= FINE_RETENTION_S), default=0)
        fine_ids = list(range(current - fine_needed // FINE_S + 1, current + 1))
        coarse_needed = max((s for s in spec.values() if s > FINE_RETENTION_S), default=0)
        minute = int(now // COARSE_S)
        coarse_ids = list(range(minute - coarse_needed // COARSE_S, minute))
        pipe = self.redis.pipeline(transaction=False)
        for keys in self.parts:
            for index in fine_ids:
                pipe.hgetall(keys.mon_10s(index))
            for index in coarse_ids:
                pipe.hgetall(keys.mon_1m(index))
        raw = await pipe.execute() if fine_ids or coarse_ids else []
        # Each partition's buckets, one after the other: fine by index, then coarse.
        fine: dict[int, list[dict[str, int]]] = {i: [] for i in fine_ids}
        coarse: list[dict[str, int]] = []
        step = len(fine_ids) + len(coarse_ids)
        for start in range(0, len(raw), step):
            for i, r in zip(fine_ids, raw[start : start + len(fine_ids)], strict=True):
                fine[i].append(parse_bucket(r))
            coarse += [parse_bucket(r) for r in raw[start + len(fine_ids) : start + step]]
        result: dict[str, WindowStats] = {}
        for name, seconds in spec.items():
            if seconds <= FINE_RETENTION_S:
                first = current - seconds // FINE_S + 1
                picked = [b for i in fine_ids if i >= first for b in fine[i]]
                result[name] = combine(name, seconds, picked)
            else:
                # Finished minutes from the roll-ups, plus this minute's fine buckets.
                this_minute = [b for i in fine_ids if i >= minute * 6 for b in fine[i]]
                result[name] = combine(name, seconds, coarse + this_minute)
        return result

    async def rollup(self) -> int:
        """Roll finished minutes (ended 15 s ago or more, within the fine buckets' two hours)
        into 1-minute buckets; idempotent, so any number of callers may race. Returns how
        many minutes were rolled now (summed over partitions, each rolled on its own). The
        evaluator's leader calls it every step."""
        rolled = 0
        for keys in self.parts:
            rolled += await self._rollup(keys)
        return rolled

    async def _rollup(self, keys: QueueKeys) -> int:
        marker = keys.mon_rolled_until
        last_done = await self.redis.get(marker)
        # Finished by the clock that stamps the buckets (the scripts use Redis TIME): a host
        # clock running ahead would roll minutes up before their last buckets were written.
        upto = int((await self.server_clock() - 15) // COARSE_S)  # minutes < upto are done
        oldest = upto - FINE_RETENTION_S // COARSE_S + 1
        first = max(oldest, int(last_done) + 1 if last_done else oldest)
        if first >= upto:
            return 0
        scripts = Scripts(self.redis)
        await self.redis.script_load(scripts.rollup.script)
        pipe = self.redis.pipeline(transaction=False)
        for index in range(first, upto):
            pipe.evalsha(
                scripts.rollup.sha,
                1,
                keys.meta,
                keys.prefix,
                index,
            )
        rolled = sum(int(x) for x in await pipe.execute())
        await self.redis.set(marker, upto - 1, ex=7 * 86400)
        return rolled


async def server_time(redis: RedisClient) -> float:
    """Redis's clock (epoch seconds): the one every script stamps buckets and leases with."""
    seconds, micros = await redis.time()
    return int(seconds) + int(micros) / 1e6


async def record_depth(
    redis: RedisClient, keys: QueueKeys, counts: Mapping[str, Any], now: float
) -> None:
    """Sample the queue depth into the current 10 s bucket (``_qd`` waiting + delayed,
    ``_age`` oldest waiting ms, ``_qdn`` 1; the last sample of a bucket wins, the minute
    roll-up sums them). The alert leader samples every evaluation and the dashboard on
    every update, so depth charts have history whether or not anyone watches."""
    bucket = keys.mon_10s(int(now // FINE_S))
    pipe = redis.pipeline(transaction=False)
    pipe.hset(
        bucket,
        mapping={
            "_qd": int(counts["waiting"]) + int(counts["delayed"]),
            "_age": int(counts["oldest_waiting_age_ms"]),
            "_qdn": 1,
        },
    )
    pipe.expire(bucket, FINE_RETENTION_S)
    await pipe.execute()
