"""The monitor: one place that turns the queue's counters into the figures people and
alert rules look at (windows, percentiles, utilization, capacity, drain time, signals)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from sluice.monitor.windows import WindowReader, WindowStats
from sluice.queue.queue import Queue
from sluice.worker import registry

WINDOWS: Mapping[str, int] = {"1m": 60, "5m": 300, "30m": 1800, "1h": 3600, "6h": 21600}
REPORTED = ("1m", "5m", "1h")


def burn_rate(stats: WindowStats, objective: float) -> float | None:
    """How fast the SLA error budget burns: 1.0 spends exactly the budget over the SLO
    period; 14.4 over 1 h spends 2 % of a 30-day budget."""
    compliance = stats.compliance("warning")
    if compliance is None:
        return None
    return (1.0 - compliance) / (1.0 - objective)


def capacity_per_s(slots: int, mean_processing_ms: float | None) -> float | None:
    """Little's law: with L slots busy and W seconds per job, at most L / W jobs per second."""
    if not slots or not mean_processing_ms:
        return None
    return slots / (mean_processing_ms / 1000.0)


def drain_seconds(backlog: int, service_per_s: float | None, arrival_per_s: float) -> float | None:
    """Time to empty the backlog at the current net rate; None when it is not shrinking."""
    if backlog == 0:
        return 0.0
    if service_per_s is None:
        return None
    net = service_per_s - arrival_per_s
    return backlog / net if net > 0 else None


class Monitor:
    """Reads one queue's windows, counts and workers; shared by the API, the evaluator,
    `sluice validate` and the dashboard."""

    def __init__(
        self,
        queue: Queue,
        *,
        sla_objective: float = 0.95,
        rate_limit: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.sla_objective = sla_objective
        self.rate_limit = rate_limit
        self.clock = clock
        self.reader = WindowReader(queue.redis, queue.keys, clock)

    async def windows(self) -> dict[str, WindowStats]:
        # A partitioned queue may have gained partitions (a resize): read them all, under
        # the tags its layout records.
        self.reader.parts = [engine.keys for engine in await self.queue.current_engines()]
        return await self.reader.windows(WINDOWS)

    async def signals(self) -> dict[str, float | None]:
        """The named inputs of the alert rules (see sluice.monitor.signals)."""
        windows = await self.windows()
        counts = await self.queue.counts()
        return self.signals_from(windows, counts)

    def signals_from(
        self, windows: Mapping[str, WindowStats], counts: Mapping[str, Any]
    ) -> dict[str, float | None]:
        w1, w5 = windows["1m"], windows["5m"]
        return {
            "queue_wait_p95_ms_1m": w1.wait.percentile(95),
            "utilization_1m": w1.utilization,
            "utilization_5m": w5.utilization,
            "failure_rate_5m": w5.failure_rate,
            "finished_5m": float(w5.completed + w5.failed),
            "sla_compliance_warning_5m": w5.compliance("warning"),
            "sla_samples_5m": float(w5.completed),
            "oldest_waiting_age_ms": float(counts["oldest_waiting_age_ms"]),
            "burn_rate_5m": burn_rate(w5, self.sla_objective),
            "burn_rate_30m": burn_rate(windows["30m"], self.sla_objective),
            "burn_rate_1h": burn_rate(windows["1h"], self.sla_objective),
            "burn_rate_6h": burn_rate(windows["6h"], self.sla_objective),
        }

    async def snapshot(self) -> dict[str, Any]:
        """Everything the health document and the dashboard show about the queue."""
        windows = await self.windows()
        counts = await self.queue.counts()
        workers = await registry.live_workers(self.queue.redis, self.queue.keys)
        live = await self.queue.live_settings()
        slots = sum(int(w["slots"]) for w in workers)
        w5 = windows["5m"]
        capacity = capacity_per_s(slots, w5.mean("ps"))
        rate_limit = live["rate_limit"] if live["rate_limit"] is not None else self.rate_limit
        service = capacity
        if rate_limit and (service is None or service > rate_limit):
            service = float(rate_limit)
        backlog = counts["waiting"] + counts["delayed"]
        doc: dict[str, Any] = {
            "counts": counts,
            "workers": {
                "count": len(workers),
                "slots": slots,
                "busy": sum(int(w["busy"]) for w in workers),
                "utilization_now": (
                    sum(float(w["utilization"]) * int(w["slots"]) for w in workers) / slots
                    if slots
                    else None
                ),
                "list": workers,
            },
            "windows": {name: windows[name].summary() for name in REPORTED},
            "capacity": {
                "estimated_jobs_per_s": capacity,
                "rate_limit": rate_limit,
                "effective_jobs_per_s": service,
                "arrival_per_s_5m": w5.arrival_rate,
                "drain_seconds": drain_seconds(backlog, service, w5.arrival_rate),
            },
            "signals": self.signals_from(windows, counts),
        }
        if self.queue.partitions > 1:
            # The counts above are sums; each partition's own (docs/partitions.md).
            doc["partitions"] = await self.queue.partition_counts()
        return doc
