"""How one alert moves between inactive, pending, firing and resolved.

Pure functions of a rule, the alert's state, the level read now and the time: no I/O and
no clock of their own, which is what lets tests drive hours of flapping input in
milliseconds. What receivers are *told* about these moves is the engine's business
(:mod:`sluice.alerts.engine`); this module only decides the state.

Lifecycle (one alert per rule and queue, identified by its fingerprint)
-----------------------------------------------------------------------
Each evaluation reads the rule's level (critical, warning or none, thresholds strict) and
its value. "Held" below means "true at every evaluation for at least the rule's ``for_s``".

* **inactive -> pending** when the level is not none. The episode starts (``started_at``).
* **pending -> inactive** as soon as the level is none at one evaluation (nothing was
  announced, so nothing to undo: flapping input never gets past pending).
* **pending -> firing** once the level has been held for ``for_s``; the severity is the
  highest one held for ``for_s`` (a critical spike inside a warning episode fires warning).
* **firing, escalation** warning -> critical once critical has been held for ``for_s``.
* **firing, de-escalation** critical -> warning once the value has been back inside the
  critical threshold *with hysteresis* for ``for_s``.
* **firing -> resolved** once the value has been back inside the lowest threshold with
  hysteresis for ``for_s``. No data (None, too few samples) counts as inside.
* **resolved -> firing** (same episode, no pending time) when the level comes back within
  ``cooldown_s`` of the resolution.
* **resolved -> pending** (a new episode) when it comes back after the cooldown.

Severity is one value per alert: critical replaces warning, so a rule never has a warning
and a critical alert at the same time.
"""

from __future__ import annotations

from collections.abc import Callable

from sluice.alerts.rules import Rule, Severity, severity_rank
from sluice.alerts.state import AlertState

__all__ = ["advance", "update_timers"]


def update_timers(
    rule: Rule, alert: AlertState, level: Severity | None, value: float | None, now: float
) -> None:
    """Start or stop the "held since" clocks of every severity for this evaluation."""
    for severity in rule.severities:
        if severity_rank(level) >= severity_rank(severity):
            alert.up_since.setdefault(severity, now)
        else:
            alert.up_since.pop(severity, None)
        if rule.is_clear(value, severity):
            alert.clear_since.setdefault(severity, now)
        else:
            alert.clear_since.pop(severity, None)


def advance(
    rule: Rule,
    alert: AlertState,
    level: Severity | None,
    now: float,
    cooldown_s: float,
    record: Callable[[AlertState, str, float], None],
) -> None:
    """Apply the transitions this evaluation allows, calling ``record(alert, event, now)``
    for each right after the state changed (so what it reads off the alert, status and
    severity, is the state that event produced)."""
    lowest = rule.severities[0]
    if alert.status in ("inactive", "resolved"):
        if level is None:
            return
        resolved_at = alert.resolved_at
        if (
            alert.status == "resolved"
            and resolved_at is not None
            and now - resolved_at < cooldown_s
        ):
            # Back within the cooldown: the same episode, firing again at once.
            alert.status, alert.severity, alert.fired_at = "firing", level, now
            record(alert, "refiring", now)
            return
        alert.status, alert.severity, alert.started_at = "pending", level, now
        alert.fired_at = None
        alert.acked_by = alert.acked_at = None
        record(alert, "pending", now)
    if alert.status == "pending":
        if level is None:
            alert.status, alert.severity = "inactive", None
            record(alert, "pending_cancelled", now)
            return
        held = _held_level(rule, alert, now)
        if held is None:
            alert.severity = level
            return
        alert.status, alert.severity, alert.fired_at = "firing", held, now
        record(alert, "firing", now)
        return
    if alert.status != "firing":
        return
    if _held(rule, alert.clear_since, lowest, now):
        alert.status, alert.resolved_at = "resolved", now
        record(alert, "resolved", now)
        return
    current = alert.severity or lowest
    held = _held_level(rule, alert, now)
    if held is not None and severity_rank(held) > severity_rank(current):
        alert.severity = held
        record(alert, "escalated", now)
    elif current != lowest and _held(rule, alert.clear_since, current, now):
        lower = rule.severities[rule.severities.index(current) - 1]
        alert.severity = lower
        record(alert, "deescalated", now)


def _held(rule: Rule, since: dict[str, float], severity: Severity, now: float) -> bool:
    start = since.get(severity)
    return start is not None and now - start >= rule.for_s


def _held_level(rule: Rule, alert: AlertState, now: float) -> Severity | None:
    held = [s for s in rule.severities if _held(rule, alert.up_since, s, now)]
    return held[-1] if held else None
