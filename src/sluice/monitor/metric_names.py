"""The Prometheus metrics Sluice exposes on /metrics: names, types, labels, help.

One table that the exporter, the shipped alert rules and the Grafana dashboard all agree
on (tests check that deploy/ references only names listed here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Bucket bounds in seconds shared by the three duration histograms; they include the
# origin's 5 s (queue wait warning), 10 s (SLA warning) and 30 s (SLA critical).
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    help: str


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("sluice_jobs_enqueued_total", "counter", ("queue",), "Jobs enqueued."),
    MetricSpec("sluice_jobs_completed_total", "counter", ("queue",), "Jobs completed."),
    MetricSpec("sluice_jobs_failed_total", "counter", ("queue",), "Failed attempts."),
    MetricSpec("sluice_jobs_retried_total", "counter", ("queue",), "Attempts scheduled again."),
    MetricSpec("sluice_jobs_dead_total", "counter", ("queue",), "Jobs dead-lettered."),
    MetricSpec(
        "sluice_sla_verdicts_total",
        "counter",
        ("queue", "verdict"),
        "Finished messages by SLA verdict (ok, warning, critical).",
    ),
    MetricSpec(
        "sluice_deadline_source_total",
        "counter",
        ("queue", "source"),
        "Messages by what set their deadline (applied_sla:first_response, "
        "applied_sla:next_response, rule:<name>, priority, default); counted while a "
        "deadline feature is on (docs/priorities.md).",
    ),
    MetricSpec(
        "sluice_queue_wait_seconds",
        "histogram",
        ("queue",),
        "Time from enqueued to reserved by a worker slot.",
    ),
    MetricSpec(
        "sluice_processing_seconds",
        "histogram",
        ("queue",),
        "Time from reserved to completed.",
    ),
    MetricSpec(
        "sluice_sla_duration_seconds",
        "histogram",
        ("queue",),
        "What the customer feels: reply sent (else completed) minus message created "
        "(else received).",
    ),
    MetricSpec(
        "sluice_queue_jobs",
        "gauge",
        ("queue", "state"),
        "Jobs by state: waiting, active, delayed, dead.",
    ),
    MetricSpec(
        "sluice_queue_oldest_waiting_age_seconds",
        "gauge",
        ("queue",),
        "Age of the oldest waiting message.",
    ),
    MetricSpec("sluice_queue_paused", "gauge", ("queue",), "1 while the queue is paused."),
    MetricSpec("sluice_workers", "gauge", ("queue",), "Live worker processes."),
    MetricSpec("sluice_worker_slots", "gauge", ("queue",), "Slots across live workers."),
    MetricSpec(
        "sluice_worker_utilization_ratio",
        "gauge",
        ("queue", "window"),
        "Busy slot-seconds over capacity across all workers.",
    ),
    MetricSpec(
        "sluice_sla_compliance_ratio",
        "gauge",
        ("queue", "window", "threshold"),
        "Share of finished messages within the warning or critical threshold.",
    ),
    MetricSpec(
        "sluice_throughput_jobs_per_second",
        "gauge",
        ("queue", "window"),
        "Completed jobs per second over the window.",
    ),
    MetricSpec(
        "sluice_failure_ratio",
        "gauge",
        ("queue", "window"),
        "Failed attempts over finished attempts in the window.",
    ),
    MetricSpec("sluice_alerts_firing", "gauge", ("queue", "severity"), "Alerts firing now."),
    MetricSpec(
        "sluice_scaling_desired_workers",
        "gauge",
        ("queue",),
        "Worker processes the predictive scaler recommends (absent while scaling is off).",
    ),
    MetricSpec(
        "sluice_scaling_forecast_arrivals_per_minute",
        "gauge",
        ("queue", "horizon_minutes", "bound"),
        "Forecast arrivals in the minute that many minutes ahead: expected, or upper band.",
    ),
    MetricSpec(
        "sluice_scaling_service_time_seconds",
        "gauge",
        ("queue",),
        "Mean service time the recommendation used (last hour, or the configured default).",
    ),
    MetricSpec(
        "sluice_scaling_history_minutes",
        "gauge",
        ("queue",),
        "Minutes of roll-up history the forecast was fitted on (a day is needed for seasons).",
    ),
    MetricSpec(
        "sluice_redis_pool_connections",
        "gauge",
        ("process", "state"),
        "Connections of this process's pool: in_use, idle.",
    ),
    MetricSpec("sluice_redis_pool_max_connections", "gauge", ("process",), "The pool's hard cap."),
    MetricSpec(
        "sluice_redis_pool_opened_total", "counter", ("process",), "Connections ever opened."
    ),
    MetricSpec(
        "sluice_redis_pool_waits_total",
        "counter",
        ("process",),
        "Times a caller waited for a free connection.",
    ),
    MetricSpec(
        "sluice_redis_pool_wait_seconds_total",
        "counter",
        ("process",),
        "Total time callers waited for a connection.",
    ),
    MetricSpec("sluice_redis_pool_errors_total", "counter", ("process",), "Connection errors."),
    MetricSpec(
        "sluice_redis_up",
        "gauge",
        ("process",),
        "1 when this process could read the queue from Redis for this scrape, else 0.",
    ),
    MetricSpec(
        "sluice_intake_spool_depth",
        "gauge",
        ("process",),
        "Webhooks in this host's intake spool, waiting for Redis (safe on disk).",
    ),
    MetricSpec(
        "sluice_intake_spool_oldest_age_seconds",
        "gauge",
        ("process",),
        "Age of the oldest webhook in the intake spool (0 when empty).",
    ),
    MetricSpec(
        "sluice_intake_spool_write_failing",
        "gauge",
        ("process",),
        "1 while the intake spool cannot be written (disk full): webhooks get 503.",
    ),
    MetricSpec(
        "sluice_intake_spool_write_failures_total",
        "counter",
        ("process",),
        "Webhooks the spool could not write (answered 503).",
    ),
    MetricSpec(
        "sluice_intake_spool_replayed_total",
        "counter",
        ("process",),
        "Spooled webhooks moved into the queue.",
    ),
    # Adaptive concurrency (docs/adaptive-concurrency.md).
    MetricSpec(
        "sluice_concurrency_target",
        "gauge",
        ("queue",),
        "Global slot count the adaptive controller set (absent in static mode).",
    ),
    MetricSpec(
        "sluice_concurrency_share",
        "gauge",
        ("queue", "worker"),
        "Slots each live worker runs now (its share of the target, or its static count).",
    ),
    MetricSpec(
        "sluice_concurrency_decisions_total",
        "counter",
        ("queue", "direction"),
        "Changes of the adaptive concurrency target, up or down.",
    ),
    MetricSpec(
        "sluice_broker_calls_total",
        "counter",
        ("queue", "outcome"),
        "Broker calls by outcome (ok, error, throttled = HTTP 429).",
    ),
    MetricSpec(
        "sluice_broker_latency_seconds_total",
        "counter",
        ("queue",),
        "Summed latency of broker calls (divide by the calls for the mean).",
    ),
    MetricSpec(
        "sluice_breaker_state",
        "gauge",
        ("queue", "broker"),
        "Circuit breaker of an AI broker: 0 closed, 1 half-open, 2 open (calls stopped).",
    ),
    MetricSpec(
        "sluice_breaker_transitions_total",
        "counter",
        ("queue", "broker", "to"),
        "Circuit breaker state changes, by the state entered.",
    ),
    MetricSpec(
        "sluice_breaker_fallback_total",
        "counter",
        ("queue", "broker"),
        "Turns of a broker answered by the breaker's fallback while it was open.",
    ),
    MetricSpec(
        "sluice_fairness_cap",
        "gauge",
        ("queue", "cap"),
        "Tenant fairness cap: concurrency (turns), rate (starts/s), inbox_*: per inbox; 0 = off.",
    ),
    MetricSpec(
        "sluice_fairness_decisions_total",
        "counter",
        ("queue", "decision"),
        "Fairness decisions: lanes held back at the concurrency or rate cap, idle slots lent.",
    ),
    MetricSpec(
        "sluice_account_active",
        "gauge",
        ("queue", "account"),
        "Turns in flight per account (the busiest accounts, the rest as account=other).",
    ),
    MetricSpec(
        "sluice_account_held",
        "gauge",
        ("queue", "account"),
        "Lanes of an account held back at a fairness cap right now (busiest accounts, other).",
    ),
    MetricSpec(
        "sluice_account_capped_total",
        "counter",
        ("queue", "account"),
        "Lanes of an account held back at a fairness cap (busiest accounts, other).",
    ),
)

METRIC_NAMES: frozenset[str] = frozenset(m.name for m in METRICS)


def exposed_series_names() -> frozenset[str]:
    """Every series name a scrape can contain (histograms add _bucket, _sum, _count)."""
    names: set[str] = set()
    for metric in METRICS:
        if metric.kind == "histogram":
            names.update(f"{metric.name}{s}" for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(metric.name)
    return frozenset(names)
