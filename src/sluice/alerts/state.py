"""The engine's memory of one alert, and reading it back from the JSON a leader saved.

Kept apart from the engine because it is the contract between successive leaders: the
fields of :class:`AlertState` are the saved JSON (``dataclasses.asdict``), so renaming one
is a format change that needs a new :data:`STATE_VERSION`. Reading is forgiving where a
configuration change makes old state odd (a rule lost a severity, a rule disappeared) and
strict where the data itself is broken (a ValueError, so the evaluator starts afresh).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sluice.alerts.model import Status, optional_float, severity_of, status_of
from sluice.alerts.rules import Rule, Severity

__all__ = ["STATE_VERSION", "AlertState", "dump_state", "load_alert", "stored_alerts"]

STATE_VERSION = 1


@dataclass
class AlertState:
    """Mutable state of one alert; everything needed to continue after a leader change."""

    rule: str
    fingerprint: str
    status: Status = "inactive"
    severity: Severity | None = None
    value: float | None = None
    started_at: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    # Since when the level has been at least this severity, continuously.
    up_since: dict[str, float] = field(default_factory=dict)
    # Since when the value has been inside this severity's hysteresis band, continuously.
    clear_since: dict[str, float] = field(default_factory=dict)
    # What receivers were last told: the firing severity, or None (not firing / resolved).
    notified: Severity | None = None
    notified_started_at: float | None = None
    last_notified_at: float | None = None
    acked_by: str | None = None
    acked_at: float | None = None
    silenced_until: float | None = None
    silenced_by: str | None = None


def dump_state(queue_name: str, alerts: dict[str, AlertState]) -> str:
    """The whole state of one queue's alerts as JSON, for the next leader."""
    stored = {fp: asdict(alert) for fp, alert in alerts.items()}
    return json.dumps(
        {"version": STATE_VERSION, "queue": queue_name, "alerts": stored},
        sort_keys=True,
        allow_nan=False,
    )


def stored_alerts(text: str | bytes, queue_name: str) -> dict[str, Any]:
    """The raw per-fingerprint entries of a :func:`dump_state` document of ``queue_name``.

    ValueError for another version, another queue, or a document without alerts.
    """
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise ValueError("unsupported alert state version")
    if data.get("queue") != queue_name:
        raise ValueError(f"alert state of queue {data.get('queue')!r}, not {queue_name!r}")
    stored = data.get("alerts")
    if not isinstance(stored, dict):
        raise ValueError("alert state without alerts")
    return stored


def load_alert(rule: Rule, fp: str, raw: dict[str, Any]) -> AlertState:
    """One stored entry as state for ``rule`` (whose thresholds may have changed since)."""

    def text(key: str) -> str | None:
        value = raw.get(key)
        return None if value is None else str(value)

    return AlertState(
        rule=rule.name,
        fingerprint=fp,
        status=status_of(raw.get("status", "inactive")),
        severity=_fit(severity_of(raw.get("severity")), rule),
        value=optional_float(raw.get("value")),
        started_at=optional_float(raw.get("started_at")),
        fired_at=optional_float(raw.get("fired_at")),
        resolved_at=optional_float(raw.get("resolved_at")),
        up_since=_timers(raw.get("up_since"), rule),
        clear_since=_timers(raw.get("clear_since"), rule),
        notified=_fit(severity_of(raw.get("notified")), rule),
        notified_started_at=optional_float(raw.get("notified_started_at")),
        last_notified_at=optional_float(raw.get("last_notified_at")),
        acked_by=text("acked_by"),
        acked_at=optional_float(raw.get("acked_at")),
        silenced_until=optional_float(raw.get("silenced_until")),
        silenced_by=text("silenced_by"),
    )


def _timers(value: object, rule: Rule) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in value.items()
        if k in rule.severities and isinstance(v, int | float)
    }


def _fit(severity: Severity | None, rule: Rule) -> Severity | None:
    """A stored severity the rule may no longer have (thresholds changed): the nearest one."""
    if severity is None or severity in rule.severities:
        return severity
    return rule.severities[-1] if severity == "critical" else rule.severities[0]
