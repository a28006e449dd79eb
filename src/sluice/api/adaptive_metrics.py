"""The adaptive concurrency families of /metrics: the controller's target and decisions,
each live worker's slots, and the brokers' call counters the controller reads
(docs/adaptive-concurrency.md). From Redis, like every other system family."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sluice.broker.meter import read_totals
from sluice.control.controller import read_status
from sluice.monitor.metric_names import METRICS
from sluice.queue.queue import Queue

_HELP = {m.name: m.help for m in METRICS}


async def adaptive_families(queue: Queue, workers: Sequence[Mapping[str, Any]]) -> list[Metric]:
    """The families for ``queue``; ``workers`` are the live registry records."""
    name = queue.name
    families: list[Metric] = []
    status = await read_status(queue)
    if status.target is not None:
        target = GaugeMetricFamily(
            "sluice_concurrency_target", _HELP["sluice_concurrency_target"], labels=["queue"]
        )
        target.add_metric([name], status.target)
        decisions = CounterMetricFamily(
            "sluice_concurrency_decisions",
            _HELP["sluice_concurrency_decisions_total"],
            labels=["queue", "direction"],
        )
        for direction, count in status.decisions.items():
            decisions.add_metric([name, direction], count)
        families += [target, decisions]
    share = GaugeMetricFamily(
        "sluice_concurrency_share", _HELP["sluice_concurrency_share"], labels=["queue", "worker"]
    )
    for worker in workers:
        share.add_metric([name, str(worker.get("id", ""))], float(worker.get("slots", 0)))
    families.append(share)
    totals = await read_totals(queue.redis, queue.keys)
    calls = CounterMetricFamily(
        "sluice_broker_calls", _HELP["sluice_broker_calls_total"], labels=["queue", "outcome"]
    )
    calls.add_metric([name, "ok"], totals.calls - totals.errors)
    calls.add_metric([name, "error"], totals.errors - totals.throttled)
    calls.add_metric([name, "throttled"], totals.throttled)
    latency = CounterMetricFamily(
        "sluice_broker_latency_seconds",
        _HELP["sluice_broker_latency_seconds_total"],
        labels=["queue"],
    )
    latency.add_metric([name], totals.latency_ms / 1000)
    families += [calls, latency]
    return families
