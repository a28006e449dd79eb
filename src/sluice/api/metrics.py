"""/metrics in the Prometheus text format, rendered from Redis.

Every worker process on every host writes its counters and histogram buckets into the
queue's Redis keys, so one scrape of any API process sees the whole system: multi-process
safe without prometheus-client's per-process files. The pool and spool families are each
API process's own, labelled with its pid: every API process of the host, whichever of them
answers the scrape (:mod:`sluice.api.process_metrics`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from sluice.api.adaptive_metrics import adaptive_families
from sluice.api.breaker_metrics import breaker_families
from sluice.api.fairness_metrics import fairness_families
from sluice.api.process_metrics import Readings
from sluice.monitor.metric_names import DURATION_BUCKETS_S, METRICS, MetricSpec
from sluice.monitor.snapshot import Monitor
from sluice.queue.queue import Queue
from sluice.scaling.service import read_state
from sluice.service.spool import SpoolStats

_SPECS: dict[str, MetricSpec] = {m.name: m for m in METRICS}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _help(name: str) -> str:
    return _SPECS[name].help


class _Frozen:
    """A collector that yields metric families computed before the scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _counter(name: str, labels: Mapping[str, str], value: float) -> Metric:
    base = name.removesuffix("_total")
    family = CounterMetricFamily(base, _help(name), labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def _histogram(name: str, queue: str, totals: Mapping[str, int], kind: str) -> Metric:
    family = HistogramMetricFamily(name, _help(name), labels=["queue"])
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for index, bound in enumerate(DURATION_BUCKETS_S, start=1):
        cumulative += totals.get(f"h{kind}:{index}", 0)
        buckets.append((repr(bound), float(cumulative)))
    cumulative += totals.get(f"h{kind}:{len(DURATION_BUCKETS_S) + 1}", 0)
    buckets.append(("+Inf", float(cumulative)))
    family.add_metric([queue], buckets, sum_value=totals.get(f"{kind}s", 0) / 1000.0)
    return family


def _spool_families(processes: Mapping[str, Readings]) -> list[Metric]:
    """The host's intake spool (sluice.service.spool) as each API process of the host last
    saw it: the gauges describe the one spool file (aggregate with max), the counters are
    each process's own."""
    specs = (
        ("sluice_intake_spool_depth", GaugeMetricFamily, lambda s: s["depth"]),
        ("sluice_intake_spool_oldest_age_seconds", GaugeMetricFamily, lambda s: s["oldest_age_s"]),
        (
            "sluice_intake_spool_write_failing",
            GaugeMetricFamily,
            lambda s: 1.0 if s["last_error"] else 0.0,
        ),
        ("sluice_intake_spool_write_failures_total", CounterMetricFamily, lambda s: s["failures"]),
        ("sluice_intake_spool_replayed_total", CounterMetricFamily, lambda s: s["replayed"]),
    )
    spools = {pid: r["spool"] for pid, r in processes.items() if r.get("spool")}
    if not spools:
        return []
    families: list[Metric] = []
    for name, kind, value in specs:
        family = kind(name.removesuffix("_total"), _help(name), labels=["process"])
        for pid, spool in sorted(spools.items()):
            family.add_metric([pid], float(value(spool)))
        families.append(family)
    return families


def _pool_families(processes: Mapping[str, Readings]) -> list[Metric]:
    """Each API process's Redis pool (labelled with its pid)."""
    conns = GaugeMetricFamily(
        "sluice_redis_pool_connections",
        _help("sluice_redis_pool_connections"),
        labels=["process", "state"],
    )
    fam: list[Metric] = [conns]
    specs = (
        ("sluice_redis_pool_max_connections", GaugeMetricFamily, "max"),
        ("sluice_redis_pool_opened_total", CounterMetricFamily, "opened"),
        ("sluice_redis_pool_waits_total", CounterMetricFamily, "waits"),
        ("sluice_redis_pool_wait_seconds_total", CounterMetricFamily, "wait_time_seconds"),
        ("sluice_redis_pool_errors_total", CounterMetricFamily, "errors"),
    )
    families = {
        name: kind(name.removesuffix("_total"), _help(name), labels=["process"])
        for name, kind, _ in specs
    }
    for pid, reading in sorted(processes.items()):
        pool = reading.get("pool") or {}
        conns.add_metric([pid, "in_use"], pool.get("in_use", 0))
        conns.add_metric([pid, "idle"], pool.get("idle", 0))
        for name, _, field in specs:
            families[name].add_metric([pid], pool.get(field, 0))
    fam.extend(families.values())
    return fam


def render_local(spool: SpoolStats | None) -> bytes:
    """What this process knows without Redis: served even while Redis is unreachable,
    which is when the spool matters."""
    registry = CollectorRegistry(auto_describe=False)
    pid = str(os.getpid())
    up = _gauge("sluice_redis_up", {"process": pid}, 0.0)
    own = {pid: {"spool": asdict(spool) if spool is not None else None}}
    registry.register(_Frozen([up, *_spool_families(own)]))
    return generate_latest(registry)


async def render(
    queue: Queue,
    monitor: Monitor,
    firing: Mapping[str, int],
    processes: Mapping[str, Readings],
) -> bytes:
    """The system's families from Redis (the same from every process), then every API
    process of this host: its pool and its view of the spool (``processes``, pid →
    readings, from :func:`sluice.api.process_metrics.host_processes`)."""
    totals: dict[str, int] = {}
    # A partitioned queue's counters: summed over partitions.
    for engine in await queue.current_engines():
        raw = await queue.redis.hgetall(engine.keys.mon_total)
        for k, v in raw.items():
            name = k.decode() if isinstance(k, bytes) else k
            totals[name] = totals.get(name, 0) + int(v)
    snapshot = await monitor.snapshot()
    windows = await monitor.windows()
    q = {"queue": queue.name}
    fam: list[Metric] = [
        _counter("sluice_jobs_enqueued_total", q, totals.get("enq", 0)),
        _counter("sluice_jobs_completed_total", q, totals.get("n", 0)),
        _counter("sluice_jobs_failed_total", q, totals.get("fail", 0)),
        _counter("sluice_jobs_retried_total", q, totals.get("retry", 0)),
        _counter("sluice_jobs_dead_total", q, totals.get("dead", 0)),
    ]
    verdicts = CounterMetricFamily(
        "sluice_sla_verdicts", _help("sluice_sla_verdicts_total"), labels=["queue", "verdict"]
    )
    for field, label in (("ok", "ok"), ("warn", "warning"), ("crit", "critical")):
        verdicts.add_metric([queue.name, label], totals.get(field, 0))
    fam.append(verdicts)
    fam.append(await _deadline_sources(queue))
    fam.append(_histogram("sluice_queue_wait_seconds", queue.name, totals, "w"))
    fam.append(_histogram("sluice_processing_seconds", queue.name, totals, "p"))
    fam.append(_histogram("sluice_sla_duration_seconds", queue.name, totals, "s"))

    counts: dict[str, Any] = snapshot["counts"]
    jobs = GaugeMetricFamily(
        "sluice_queue_jobs", _help("sluice_queue_jobs"), labels=["queue", "state"]
    )
    for state in ("waiting", "active", "delayed", "dead"):
        jobs.add_metric([queue.name, state], counts[state])
    fam.append(jobs)
    fam.append(
        _gauge("sluice_queue_oldest_waiting_age_seconds", q, counts["oldest_waiting_age_ms"] / 1000)
    )
    fam.append(_gauge("sluice_queue_paused", q, 1.0 if counts["paused"] else 0.0))
    fam.append(_gauge("sluice_workers", q, snapshot["workers"]["count"]))
    fam.append(_gauge("sluice_worker_slots", q, snapshot["workers"]["slots"]))

    util = GaugeMetricFamily(
        "sluice_worker_utilization_ratio",
        _help("sluice_worker_utilization_ratio"),
        labels=["queue", "window"],
    )
    compliance = GaugeMetricFamily(
        "sluice_sla_compliance_ratio",
        _help("sluice_sla_compliance_ratio"),
        labels=["queue", "window", "threshold"],
    )
    throughput = GaugeMetricFamily(
        "sluice_throughput_jobs_per_second",
        _help("sluice_throughput_jobs_per_second"),
        labels=["queue", "window"],
    )
    failure = GaugeMetricFamily(
        "sluice_failure_ratio", _help("sluice_failure_ratio"), labels=["queue", "window"]
    )
    for name in ("1m", "5m", "1h"):
        stats = windows[name]
        if stats.utilization is not None:
            util.add_metric([queue.name, name], stats.utilization)
        for threshold in ("warning", "critical"):
            value = stats.compliance(threshold)
            if value is not None:
                compliance.add_metric([queue.name, name, threshold], value)
        throughput.add_metric([queue.name, name], stats.throughput)
        if stats.failure_rate is not None:
            failure.add_metric([queue.name, name], stats.failure_rate)
    fam.extend([util, compliance, throughput, failure])

    alerts = GaugeMetricFamily(
        "sluice_alerts_firing", _help("sluice_alerts_firing"), labels=["queue", "severity"]
    )
    for severity in ("warning", "critical"):
        alerts.add_metric([queue.name, severity], firing.get(severity, 0))
    fam.append(alerts)
    fam.extend(_scaling_families(queue.name, await read_state(queue)))
    fam.extend(await breaker_families(queue))
    fam.extend(await fairness_families(queue))

    fam.extend(await adaptive_families(queue, snapshot["workers"]["list"]))
    fam.extend(_pool_families(processes))
    fam.append(_gauge("sluice_redis_up", {"process": str(os.getpid())}, 1.0))
    fam.extend(_spool_families(processes))

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Frozen(fam))
    return generate_latest(registry)


def _scaling_families(queue: str, state: Mapping[str, Any] | None) -> list[Metric]:
    """The predictive scaler's last recommendation and forecast (none while it is off or
    before the leader computed one: an absent series, not a made-up 0)."""
    if state is None:
        return []
    q = {"queue": queue}
    forecast = GaugeMetricFamily(
        "sluice_scaling_forecast_arrivals_per_minute",
        _help("sluice_scaling_forecast_arrivals_per_minute"),
        labels=["queue", "horizon_minutes", "bound"],
    )
    for ahead, point in enumerate(state["forecast"]["points"], start=1):
        forecast.add_metric([queue, str(ahead), "expected"], float(point["expected"]))
        forecast.add_metric([queue, str(ahead), "upper"], float(point["upper"]))
    return [
        _gauge("sluice_scaling_desired_workers", q, float(state["desired_workers"])),
        forecast,
        _gauge("sluice_scaling_service_time_seconds", q, float(state["inputs"]["service_time_s"])),
        _gauge("sluice_scaling_history_minutes", q, float(state["forecast"]["history_minutes"])),
    ]


async def _deadline_sources(queue: Queue) -> Metric:
    """What set the messages' deadlines (the intake counts them: sluice.deadlines)."""
    family = CounterMetricFamily(
        "sluice_deadline_source",
        _help("sluice_deadline_source_total"),
        labels=["queue", "source"],
    )
    raw = await queue.redis.hgetall(queue.keys.deadline_sources)
    for source, count in sorted(raw.items()):
        name = source.decode() if isinstance(source, bytes) else str(source)
        family.add_metric([queue.name, name], int(count))
    return family


def _gauge(name: str, labels: Mapping[str, str], value: float) -> Metric:
    family = GaugeMetricFamily(name, _help(name), labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family
