"""The contract between the metrics side and the alert rules.

The SLA evaluator (windows, percentiles, utilization) produces a flat :data:`Signals`
mapping once per evaluation; the alert rules only read it. Keeping the contract a plain
mapping of well-known names means the rules can be tested without Redis or windows, and the
metrics code can change how it computes a number without touching the alerting code.

``None`` means "no data" (an empty window, a ratio with no denominator). Rules treat it as
"not beyond any threshold" rather than as zero, so an idle queue never looks healthy *or*
broken by accident; see :mod:`sluice.alerts.rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

__all__ = [
    "ALL_SIGNALS",
    "BURN_RATE_1H",
    "BURN_RATE_5M",
    "BURN_RATE_6H",
    "BURN_RATE_30M",
    "FAILURE_RATE_5M",
    "FINISHED_5M",
    "INTAKE_SPOOL_OLDEST_AGE_MS",
    "INTAKE_SPOOL_WRITE_FAILING",
    "OLDEST_WAITING_AGE_MS",
    "QUEUE_WAIT_P95_MS_1M",
    "SLA_COMPLIANCE_WARNING_5M",
    "SLA_SAMPLES_5M",
    "UTILIZATION_1M",
    "UTILIZATION_5M",
    "Signals",
]

#: Signal name -> value; ``None`` (or a missing name) means no data.
Signals: TypeAlias = Mapping[str, float | None]

#: p95 of queue wait (enqueued -> reserved) over the last minute, in milliseconds.
QUEUE_WAIT_P95_MS_1M = "queue_wait_p95_ms_1m"
#: Busy slot-seconds over capacity across all workers over the last minute, 0..1.
UTILIZATION_1M = "utilization_1m"
#: The same over the last 5 minutes: sustained saturation, the capacity signal.
UTILIZATION_5M = "utilization_5m"
#: Failed attempts over finished attempts in the last 5 minutes, 0..1.
FAILURE_RATE_5M = "failure_rate_5m"
#: Finished attempts (completed + failed) in the last 5 minutes: the failure rate's sample size.
FINISHED_5M = "finished_5m"
#: Share of messages finished in the last 5 minutes within SLA_WARNING_THRESHOLD, 0..1.
SLA_COMPLIANCE_WARNING_5M = "sla_compliance_warning_5m"
#: Messages classified in the last 5 minutes: the compliance's sample size.
SLA_SAMPLES_5M = "sla_samples_5m"
#: Age of the oldest message still waiting for a worker, in milliseconds.
OLDEST_WAITING_AGE_MS = "oldest_waiting_age_ms"
#: Error-budget burn rate over each window: (1 - compliance) / (1 - objective).
BURN_RATE_5M = "burn_rate_5m"
BURN_RATE_30M = "burn_rate_30m"
BURN_RATE_1H = "burn_rate_1h"
BURN_RATE_6H = "burn_rate_6h"
#: Age of the oldest webhook waiting in this API host's intake spool (Redis was slow or
#: down), in milliseconds; 0 when the spool is empty.
INTAKE_SPOOL_OLDEST_AGE_MS = "intake_spool_oldest_age_ms"
#: 1 while the intake spool cannot be written (a full disk): webhooks are refused with 503.
INTAKE_SPOOL_WRITE_FAILING = "intake_spool_write_failing"

ALL_SIGNALS: tuple[str, ...] = (
    QUEUE_WAIT_P95_MS_1M,
    UTILIZATION_1M,
    UTILIZATION_5M,
    FAILURE_RATE_5M,
    FINISHED_5M,
    SLA_COMPLIANCE_WARNING_5M,
    SLA_SAMPLES_5M,
    OLDEST_WAITING_AGE_MS,
    BURN_RATE_5M,
    BURN_RATE_30M,
    BURN_RATE_1H,
    BURN_RATE_6H,
    INTAKE_SPOOL_OLDEST_AGE_MS,
    INTAKE_SPOOL_WRITE_FAILING,
)
