"""Alert rules: which signal, which direction, which thresholds, and how to leave them.

A rule is data, not code: the lifecycle (pending, firing, resolved) lives in
:mod:`sluice.alerts.lifecycle` and :mod:`sluice.alerts.engine`, so every rule gets the same
pending time, hysteresis and notification behaviour, and a rule can be unit-tested as a
pure function of the signals.

A rule's *value* is usually one signal, but it may be any function of the signals: the
multi-window burn-rate rules use the smaller of two windows (:class:`MinOf`), which is
"both windows above the threshold" expressed as one number that can still be shown to a
person and compared with hysteresis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, TypedDict

from sluice.alerts.config import AlertSettings
from sluice.monitor import signals as sig
from sluice.monitor.signals import Signals

__all__ = [
    "SEVERITIES",
    "Direction",
    "MinOf",
    "Rule",
    "Severity",
    "Unit",
    "ValueFn",
    "default_rules",
    "format_value",
    "severity_rank",
]

Severity: TypeAlias = Literal["warning", "critical"]
Direction: TypeAlias = Literal["above", "below"]
#: How a value is shown to people: milliseconds, a 0..1 ratio, or a multiple (burn rate).
Unit: TypeAlias = Literal["ms", "ratio", "x"]
ValueFn: TypeAlias = Callable[[Signals], float | None]

#: Lowest first.
SEVERITIES: tuple[Severity, ...] = ("warning", "critical")


def severity_rank(severity: Severity | None) -> int:
    """0 for none, then increasing with severity: for comparisons."""
    return 0 if severity is None else SEVERITIES.index(severity) + 1


def _number(value: float | None) -> float | None:
    """A usable reading: None for no data, NaN or infinities from a broken producer."""
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class MinOf:
    """The smallest of several signals; no data if any of them has none.

    "Every window above T" is "the smallest window above T", which keeps multi-window
    rules a plain threshold comparison (and a frozen, comparable, printable value).
    """

    names: tuple[str, ...]

    def __call__(self, signals: Signals) -> float | None:
        values = [_number(signals.get(name)) for name in self.names]
        if not values or any(v is None for v in values):
            return None
        return min(v for v in values if v is not None)


@dataclass(frozen=True)
class Rule:
    """One alert rule; the alert engine keeps one alert per rule and queue.

    * ``direction="above"``: beyond a threshold means ``value > threshold``;
      ``"below"``: ``value < threshold`` (compliance under its objective).
    * ``warning`` / ``critical``: either may be None (that severity does not exist), not
      both; the critical threshold must be stricter than the warning one.
    * ``min_samples_signal`` / ``min_samples``: below that many samples the value is
      treated as no data, so five messages with one failure never page anyone.
    * ``hysteresis``: a fraction of the threshold that the value must come back past before
      the alert may resolve (or de-escalate), so a value hovering at the threshold does
      not resolve and re-fire on every evaluation. For ``"below"`` rules with ``limit``
      (the best possible value, 1.0 for ratios) the band is that fraction of the distance
      to the limit: compliance 95 % with 10 % resolves at 95.5 %, not at 104.5 %.
    * ``for_s``: how long a condition must hold before it fires, escalates, de-escalates
      or resolves.
    * ``value_fn``: the value as a function of the signals; by default ``signals[signal]``.
    """

    name: str
    summary: str
    signal: str
    direction: Direction
    warning: float | None
    critical: float | None
    min_samples_signal: str | None = None
    min_samples: float = 0
    hysteresis: float = 0.1
    for_s: float = 30.0
    unit: Unit = "ms"
    limit: float | None = None
    value_fn: ValueFn | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.warning is None and self.critical is None:
            raise ValueError(f"rule {self.name}: needs a warning or a critical threshold")
        if self.warning is not None and self.critical is not None:
            stricter = (
                self.critical > self.warning
                if self.direction == "above"
                else self.critical < self.warning
            )
            if not stricter:
                raise ValueError(
                    f"rule {self.name}: critical ({self.critical}) must be beyond "
                    f"warning ({self.warning}) in direction {self.direction}"
                )
        if not 0 <= self.hysteresis < 1:
            raise ValueError(f"rule {self.name}: hysteresis must be in [0, 1)")
        if self.for_s < 0 or self.min_samples < 0:
            raise ValueError(f"rule {self.name}: for_s and min_samples must not be negative")

    @property
    def severities(self) -> tuple[Severity, ...]:
        """The severities this rule has, lowest first."""
        return tuple(s for s in SEVERITIES if self.threshold(s) is not None)

    def threshold(self, severity: Severity) -> float | None:
        return self.warning if severity == "warning" else self.critical

    def value(self, signals: Signals) -> float | None:
        """The rule's reading, or None for no data (missing, non-finite, too few samples)."""
        if self.min_samples_signal is not None:
            samples = _number(signals.get(self.min_samples_signal))
            if samples is None or samples < self.min_samples:
                return None
        raw = self.value_fn(signals) if self.value_fn is not None else signals.get(self.signal)
        return _number(raw)

    def beyond(self, value: float | None, severity: Severity) -> bool:
        """Whether ``value`` is past the threshold of ``severity`` (strictly)."""
        threshold = self.threshold(severity)
        if value is None or threshold is None:
            return False
        return value > threshold if self.direction == "above" else value < threshold

    def level(self, signals: Signals) -> tuple[Severity | None, float | None]:
        """(critical if beyond critical, else warning if beyond warning, else None; value)."""
        value = self.value(signals)
        for severity in reversed(SEVERITIES):
            if self.beyond(value, severity):
                return severity, value
        return None, value

    def clear_threshold(self, severity: Severity) -> float | None:
        """The value the reading must come back to before ``severity`` may end."""
        threshold = self.threshold(severity)
        if threshold is None:
            return None
        if self.direction == "above":
            return threshold - self.hysteresis * abs(threshold)
        if self.limit is not None:
            return threshold + self.hysteresis * (self.limit - threshold)
        return threshold + self.hysteresis * abs(threshold)

    def is_clear(self, value: float | None, severity: Severity) -> bool:
        """Whether ``value`` is back inside ``severity``'s threshold with the hysteresis.

        No data counts as clear: an alert whose signal disappeared (no traffic, too few
        samples) resolves after ``for_s``, as a Prometheus alert whose series vanished.
        A severity the rule does not have is always clear.
        """
        bound = self.clear_threshold(severity)
        if value is None or bound is None:
            return True
        return value <= bound if self.direction == "above" else value >= bound


class _Lifecycle(TypedDict):
    hysteresis: float
    for_s: float


def default_rules(settings: AlertSettings) -> list[Rule]:
    """The shipped rules with the thresholds of ``settings`` (origin defaults)."""
    common = _Lifecycle(hysteresis=settings.hysteresis, for_s=settings.for_s)
    return [
        Rule(
            name="queue_wait_high",
            summary="Queue wait p95 over the last minute is above its threshold",
            signal=sig.QUEUE_WAIT_P95_MS_1M,
            direction="above",
            warning=settings.queue_wait_warning_ms,
            critical=settings.queue_wait_critical_ms,
            unit="ms",
            **common,
        ),
        Rule(
            name="worker_utilization_high",
            # Over 5 minutes, not 1: a queue exists to absorb a minute at 100 %, and the
            # customer-facing symptom (queue wait) has its own 1-minute rule that should
            # page first. Sustained saturation is the signal to add capacity.
            summary="Worker utilization over the last 5 minutes is above its threshold",
            signal=sig.UTILIZATION_5M,
            direction="above",
            warning=settings.utilization_warning,
            critical=settings.utilization_critical,
            unit="ratio",
            **common,
        ),
        Rule(
            name="failure_rate_high",
            summary="Share of failed attempts over the last 5 minutes is above its threshold",
            signal=sig.FAILURE_RATE_5M,
            direction="above",
            warning=settings.failure_rate_warning,
            critical=settings.failure_rate_critical,
            min_samples_signal=sig.FINISHED_5M,
            min_samples=settings.failure_rate_min_samples,
            unit="ratio",
            **common,
        ),
        Rule(
            name="sla_compliance_low",
            summary="Share of messages answered within the SLA warning threshold over the "
            "last 5 minutes is under its objective",
            signal=sig.SLA_COMPLIANCE_WARNING_5M,
            direction="below",
            warning=settings.sla_objective,
            critical=settings.sla_compliance_critical,
            min_samples_signal=sig.SLA_SAMPLES_5M,
            min_samples=settings.sla_min_samples,
            unit="ratio",
            limit=1.0,
            **common,
        ),
        Rule(
            name="oldest_waiting_age_high",
            summary="The oldest waiting message has waited longer than its threshold",
            signal=sig.OLDEST_WAITING_AGE_MS,
            direction="above",
            warning=settings.oldest_waiting_warning_ms,
            critical=settings.oldest_waiting_critical_ms,
            unit="ms",
            **common,
        ),
        Rule(
            name="sla_burn_rate_fast",
            summary="SLA error budget burning fast: 1 h and 5 min burn rates both above "
            "their threshold",
            signal=sig.BURN_RATE_1H,
            direction="above",
            warning=None,
            critical=settings.burn_rate_fast,
            # Few messages make a noisy 5 min window: gate on its sample count.
            min_samples_signal=sig.SLA_SAMPLES_5M,
            min_samples=settings.sla_min_samples,
            unit="x",
            value_fn=MinOf((sig.BURN_RATE_1H, sig.BURN_RATE_5M)),
            **common,
        ),
        Rule(
            name="intake_spool_backlog",
            summary="Webhooks wait in the intake spool: Redis is slow or unreachable (they "
            "are safe on disk and replayed in order when it answers)",
            signal=sig.INTAKE_SPOOL_OLDEST_AGE_MS,
            direction="above",
            warning=30_000,
            critical=120_000,
            unit="ms",
            **common,
        ),
        Rule(
            name="intake_spool_write_failing",
            summary="The intake spool cannot be written (disk full?) while Redis cannot take "
            "webhooks: they are refused with 503 and may be lost",
            signal=sig.INTAKE_SPOOL_WRITE_FAILING,
            direction="above",
            warning=None,
            critical=0.5,
            unit="x",
            hysteresis=0.0,
            for_s=0.0,
        ),
        Rule(
            name="sla_burn_rate_slow",
            summary="SLA error budget burning steadily: 6 h and 30 min burn rates both above "
            "their threshold",
            signal=sig.BURN_RATE_6H,
            direction="above",
            warning=settings.burn_rate_slow,
            critical=None,
            unit="x",
            value_fn=MinOf((sig.BURN_RATE_6H, sig.BURN_RATE_30M)),
            **common,
        ),
    ]


def format_value(value: float | None, unit: Unit) -> str:
    """A reading as people read it: ``12.3 s``, ``850 ms``, ``93.5 %``, ``15.2x``."""
    if value is None:
        return "no data"
    if unit == "ms":
        return f"{value / 1000:.1f} s" if abs(value) >= 1000 else f"{value:.0f} ms"
    if unit == "ratio":
        return f"{value * 100:.1f} %"
    return f"{value:.1f}x"
