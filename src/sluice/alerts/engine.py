"""The alert lifecycle: a pure state machine from signals and a clock to notifications.

No I/O here: the evaluator (:mod:`sluice.alerts.evaluator`) feeds signals and the time,
persists the state (:mod:`sluice.alerts.store`) and hands notifications to the
channels. Keeping the machine pure is what lets the tests drive hours of flapping input
with an injected clock in milliseconds, and lets a new leader continue exactly where the
old one stopped (:meth:`AlertEngine.state_to_json` / :meth:`AlertEngine.restore`).

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

Notifications describe what receivers (Slack, a webhook) have been told, so they always
alternate ``firing`` -> (``escalated`` | ``deescalated`` | ``repeat``)* -> ``resolved``:

* ``firing`` when the alert is firing and receivers were not told so (first firing, or the
  end of a silence that hid it);
* ``escalated`` / ``deescalated`` when the firing severity differs from the one told;
* ``repeat`` every ``repeat_interval_s`` while firing, unless acknowledged;
* ``resolved`` once the alert has stayed resolved for ``cooldown_s`` (so an alert that
  comes back within the cooldown never produced a resolved/firing pair: receivers just
  see it firing throughout). With ``cooldown_s = 0`` it is sent at the resolution. Its
  ``ended_at`` is the real resolution time.

An **acknowledgement** (of a pending or firing alert) stops repeats; it ends with the
episode and with an escalation (new severity, new ack needed). A **silence** (of any alert,
by fingerprint or rule name, until a time) leaves the lifecycle alone but suppresses every
notification while it lasts; when it ends, receivers are brought up to date with at most
one notification (e.g. ``firing`` if it started firing meanwhile, nothing if it fired and
resolved entirely inside the silence).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, TypeAlias

from sluice.alerts.config import AlertSettings
from sluice.alerts.rules import SEVERITIES, Rule, Severity, Unit, severity_rank
from sluice.monitor.signals import Signals

__all__ = [
    "STATE_VERSION",
    "AlertEngine",
    "AlertSnapshot",
    "HistoryEntry",
    "Notification",
    "NotificationKind",
    "Status",
    "fingerprint",
]

Status: TypeAlias = Literal["inactive", "pending", "firing", "resolved"]
NotificationKind: TypeAlias = Literal["firing", "resolved", "escalated", "deescalated", "repeat"]

STATE_VERSION = 1
_STATUSES: tuple[Status, ...] = ("inactive", "pending", "firing", "resolved")


def fingerprint(rule_name: str, queue: str) -> str:
    """Stable identity of one rule's alert on one queue: 16 hex digits of a SHA-1.

    Deduplication in receivers (Alertmanager, a pager) keys on it, so it depends only on
    the labels that make the alert what it is, never on severity or value.
    """
    digest = hashlib.sha1(f"alertname={rule_name}\nqueue={queue}".encode(), usedforsecurity=False)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class AlertSnapshot:
    """An alert as shown to people and receivers at one moment."""

    rule: str
    fingerprint: str
    status: Status
    severity: Severity | None
    value: float | None
    threshold: float | None
    summary: str
    unit: Unit
    labels: dict[str, str]
    started_at: float | None
    ended_at: float | None = None
    acked_by: str | None = None
    silenced_until: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Notification:
    """Something receivers must be told; ``at`` is the evaluation time that produced it."""

    kind: NotificationKind
    alert: AlertSnapshot
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": self.at, "alert": self.alert.to_dict()}


@dataclass(frozen=True)
class HistoryEntry:
    """One transition or operator action, for the alert history stream.

    ``event`` is one of: pending, pending_cancelled, firing, escalated, deescalated,
    resolved, refiring, acknowledged, silenced, unsilenced, silence_expired.
    """

    at: float
    fingerprint: str
    rule: str
    queue: str
    event: str
    status: Status
    severity: Severity | None = None
    value: float | None = None
    by: str | None = None
    until: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryEntry:
        return cls(
            at=float(data["at"]),
            fingerprint=str(data["fingerprint"]),
            rule=str(data["rule"]),
            queue=str(data["queue"]),
            event=str(data["event"]),
            status=_status(data.get("status")),
            severity=_severity(data.get("severity")),
            value=_opt_float(data.get("value")),
            by=None if data.get("by") is None else str(data["by"]),
            until=_opt_float(data.get("until")),
        )


@dataclass
class _Alert:
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


class AlertEngine:
    """All alerts of one queue: feed :meth:`evaluate` and deliver what it returns.

    Not thread-safe and not shared: exactly one process (the leader) drives it at a time;
    other processes send acknowledgements and silences through the store.
    """

    def __init__(self, rules: Sequence[Rule], settings: AlertSettings, queue_name: str) -> None:
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be unique: {names}")
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.settings = settings
        self.queue_name = queue_name
        self._rules = {fingerprint(r.name, queue_name): r for r in self.rules}
        self._by_name = {r.name: fp for fp, r in self._rules.items()}
        self._alerts: dict[str, _Alert] = {}
        self._history: list[HistoryEntry] = []
        self.reset()

    # -- queries -----------------------------------------------------------------------

    def fingerprint_of(self, target: str) -> str:
        """The fingerprint for a fingerprint or a rule name; KeyError if neither."""
        if target in self._rules:
            return target
        if target in self._by_name:
            return self._by_name[target]
        raise KeyError(target)

    def get(self, target: str) -> AlertSnapshot:
        fp = self.fingerprint_of(target)
        return self._snapshot(self._alerts[fp])

    def active(self) -> list[AlertSnapshot]:
        """Pending and firing alerts, most severe first."""
        found = [
            self._snapshot(a) for a in self._alerts.values() if a.status in ("pending", "firing")
        ]
        return sorted(found, key=lambda s: (-severity_rank(s.severity), s.rule))

    def alerts(self) -> list[AlertSnapshot]:
        """Every alert, including inactive and resolved ones, in rule order."""
        return [self._snapshot(self._alerts[fp]) for fp in self._rules]

    def take_history(self) -> list[HistoryEntry]:
        """History entries since the last call (transitions and operator actions)."""
        entries, self._history = self._history, []
        return entries

    # -- operator actions --------------------------------------------------------------

    def ack(self, fingerprint: str, by: str, now: float) -> bool:
        """Acknowledge a pending or firing alert: no more repeats for this episode.

        Returns False (and changes nothing) for an inactive or resolved alert. ``fingerprint``
        may also be a rule name.
        """
        alert = self._alerts[self.fingerprint_of(fingerprint)]
        if alert.status not in ("pending", "firing"):
            return False
        alert.acked_by, alert.acked_at = by, now
        self._record(alert, "acknowledged", now, by=by)
        return True

    def silence(self, fingerprint_or_rule_name: str, until: float, by: str, now: float) -> str:
        """Suppress the alert's notifications until ``until``; returns its fingerprint."""
        if not math.isfinite(until) or until <= now:
            raise ValueError("a silence must end at a finite time in the future")
        alert = self._alerts[self.fingerprint_of(fingerprint_or_rule_name)]
        alert.silenced_until, alert.silenced_by = until, by
        self._record(alert, "silenced", now, by=by, until=until)
        return alert.fingerprint

    def unsilence(self, fingerprint_or_rule_name: str, by: str, now: float) -> bool:
        """End a silence now; False if the alert was not silenced."""
        alert = self._alerts[self.fingerprint_of(fingerprint_or_rule_name)]
        if alert.silenced_until is None:
            return False
        alert.silenced_until = alert.silenced_by = None
        self._record(alert, "unsilenced", now, by=by)
        return True

    # -- evaluation --------------------------------------------------------------------

    def evaluate(self, signals: Signals, now: float) -> list[Notification]:
        """Advance every alert to ``now`` given ``signals``; return what to tell receivers."""
        notifications: list[Notification] = []
        for fp, rule in self._rules.items():
            alert = self._alerts[fp]
            level, value = rule.level(signals)
            alert.value = value
            self._update_timers(rule, alert, level, value, now)
            self._transition(rule, alert, level, now)
            if alert.silenced_until is not None and now >= alert.silenced_until:
                alert.silenced_until = alert.silenced_by = None
                self._record(alert, "silence_expired", now)
            if alert.silenced_until is None:
                note = self._notification(alert, now)
                if note is not None:
                    notifications.append(note)
        return notifications

    def _update_timers(
        self, rule: Rule, alert: _Alert, level: Severity | None, value: float | None, now: float
    ) -> None:
        for severity in rule.severities:
            if severity_rank(level) >= severity_rank(severity):
                alert.up_since.setdefault(severity, now)
            else:
                alert.up_since.pop(severity, None)
            if rule.is_clear(value, severity):
                alert.clear_since.setdefault(severity, now)
            else:
                alert.clear_since.pop(severity, None)

    @staticmethod
    def _held(rule: Rule, since: dict[str, float], severity: Severity, now: float) -> bool:
        start = since.get(severity)
        return start is not None and now - start >= rule.for_s

    def _held_level(self, rule: Rule, alert: _Alert, now: float) -> Severity | None:
        held = [s for s in rule.severities if self._held(rule, alert.up_since, s, now)]
        return held[-1] if held else None

    def _transition(self, rule: Rule, alert: _Alert, level: Severity | None, now: float) -> None:
        lowest = rule.severities[0]
        if alert.status in ("inactive", "resolved"):
            if level is None:
                return
            resolved_at = alert.resolved_at
            if (
                alert.status == "resolved"
                and resolved_at is not None
                and now - resolved_at < self.settings.cooldown_s
            ):
                # Back within the cooldown: the same episode, firing again at once.
                alert.status, alert.severity, alert.fired_at = "firing", level, now
                self._record(alert, "refiring", now)
                return
            alert.status, alert.severity, alert.started_at = "pending", level, now
            alert.fired_at = None
            alert.acked_by = alert.acked_at = None
            self._record(alert, "pending", now)
        if alert.status == "pending":
            if level is None:
                alert.status, alert.severity = "inactive", None
                self._record(alert, "pending_cancelled", now)
                return
            held = self._held_level(rule, alert, now)
            if held is None:
                alert.severity = level
                return
            alert.status, alert.severity, alert.fired_at = "firing", held, now
            self._record(alert, "firing", now)
            return
        if alert.status != "firing":
            return
        if self._held(rule, alert.clear_since, lowest, now):
            alert.status, alert.resolved_at = "resolved", now
            self._record(alert, "resolved", now)
            return
        current = alert.severity or lowest
        held = self._held_level(rule, alert, now)
        if held is not None and severity_rank(held) > severity_rank(current):
            alert.severity = held
            self._record(alert, "escalated", now)
        elif current != lowest and self._held(rule, alert.clear_since, current, now):
            lower = rule.severities[rule.severities.index(current) - 1]
            alert.severity = lower
            self._record(alert, "deescalated", now)

    def _notification(self, alert: _Alert, now: float) -> Notification | None:
        """What receivers must be told to match the alert's state, if anything."""
        kind: NotificationKind
        if alert.status == "firing":
            if alert.notified is None:
                kind = "firing"
                alert.notified_started_at = alert.started_at
            elif alert.severity != alert.notified:
                if severity_rank(alert.severity) > severity_rank(alert.notified):
                    kind = "escalated"
                    alert.acked_by = alert.acked_at = None  # a new severity needs a new ack
                else:
                    kind = "deescalated"
            elif (
                alert.acked_by is None
                and alert.last_notified_at is not None
                and now - alert.last_notified_at >= self.settings.repeat_interval_s
            ):
                kind = "repeat"
            else:
                return None
            alert.notified, alert.last_notified_at = alert.severity, now
            return Notification(kind, self._snapshot(alert), now)
        if alert.notified is None:
            return None
        resolved_at = alert.resolved_at
        if (
            alert.status == "resolved"
            and resolved_at is not None
            and now - resolved_at < self.settings.cooldown_s
        ):
            return None  # it may come back: hold the resolved notice until the cooldown ends
        rule = self._rules[alert.fingerprint]
        severity = alert.notified
        snapshot = replace(
            self._snapshot(alert),
            status="resolved",
            severity=severity,
            threshold=rule.threshold(severity),
            labels=self._labels(rule, severity),
            started_at=alert.notified_started_at,
            ended_at=resolved_at,
        )
        alert.notified, alert.last_notified_at = None, now
        if alert.status in ("resolved", "inactive"):
            alert.acked_by = alert.acked_at = None
        return Notification("resolved", snapshot, now)

    # -- persistence -------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every alert (all inactive, no silences)."""
        self._alerts = {fp: _Alert(rule=r.name, fingerprint=fp) for fp, r in self._rules.items()}

    def state_to_json(self) -> str:
        """The whole state as JSON, for the next leader."""
        alerts = {fp: asdict(alert) for fp, alert in self._alerts.items()}
        return json.dumps(
            {"version": STATE_VERSION, "queue": self.queue_name, "alerts": alerts},
            sort_keys=True,
            allow_nan=False,
        )

    def restore(self, text: str | bytes) -> None:
        """Replace the state with one from :meth:`state_to_json`.

        Alerts of rules that no longer exist are dropped; new rules start inactive.
        """
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("unsupported alert state version")
        if data.get("queue") != self.queue_name:
            raise ValueError(f"alert state of queue {data.get('queue')!r}, not {self.queue_name!r}")
        stored = data.get("alerts")
        if not isinstance(stored, dict):
            raise ValueError("alert state without alerts")
        self.reset()
        for fp, raw in stored.items():
            rule = self._rules.get(fp)
            if rule is not None and isinstance(raw, dict):
                self._alerts[fp] = _load_alert(rule, fp, raw)

    @classmethod
    def from_json(
        cls, text: str | bytes, rules: Sequence[Rule], settings: AlertSettings, queue_name: str
    ) -> AlertEngine:
        engine = cls(rules, settings, queue_name)
        engine.restore(text)
        return engine

    # -- helpers -----------------------------------------------------------------------

    def _snapshot(self, alert: _Alert) -> AlertSnapshot:
        rule = self._rules[alert.fingerprint]
        # Resolved alerts keep the severity they had when they resolved.
        severity = None if alert.status == "inactive" else alert.severity
        return AlertSnapshot(
            rule=rule.name,
            fingerprint=alert.fingerprint,
            status=alert.status,
            severity=severity,
            value=alert.value,
            threshold=None if severity is None else rule.threshold(severity),
            summary=rule.summary,
            unit=rule.unit,
            labels=self._labels(rule, severity),
            started_at=alert.started_at,
            ended_at=alert.resolved_at if alert.status == "resolved" else None,
            acked_by=alert.acked_by,
            silenced_until=alert.silenced_until,
        )

    def _labels(self, rule: Rule, severity: Severity | None) -> dict[str, str]:
        labels = {"alertname": rule.name, "queue": self.queue_name}
        if severity is not None:
            labels["severity"] = severity
        return labels

    def _record(
        self,
        alert: _Alert,
        event: str,
        now: float,
        *,
        by: str | None = None,
        until: float | None = None,
    ) -> None:
        self._history.append(
            HistoryEntry(
                at=now,
                fingerprint=alert.fingerprint,
                rule=alert.rule,
                queue=self.queue_name,
                event=event,
                status=alert.status,
                severity=alert.severity if alert.status != "inactive" else None,
                value=alert.value,
                by=by,
                until=until,
            )
        )


def _status(value: object) -> Status:
    if value in _STATUSES:
        return value
    raise ValueError(f"unknown alert status {value!r}")


def _severity(value: object) -> Severity | None:
    if value is None:
        return None
    if value in SEVERITIES:
        return value
    raise ValueError(f"unknown severity {value!r}")


def _opt_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a number: {value!r}")


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


def _load_alert(rule: Rule, fp: str, raw: dict[str, Any]) -> _Alert:
    def text(key: str) -> str | None:
        value = raw.get(key)
        return None if value is None else str(value)

    return _Alert(
        rule=rule.name,
        fingerprint=fp,
        status=_status(raw.get("status", "inactive")),
        severity=_fit(_severity(raw.get("severity")), rule),
        value=_opt_float(raw.get("value")),
        started_at=_opt_float(raw.get("started_at")),
        fired_at=_opt_float(raw.get("fired_at")),
        resolved_at=_opt_float(raw.get("resolved_at")),
        up_since=_timers(raw.get("up_since"), rule),
        clear_since=_timers(raw.get("clear_since"), rule),
        notified=_fit(_severity(raw.get("notified")), rule),
        notified_started_at=_opt_float(raw.get("notified_started_at")),
        last_notified_at=_opt_float(raw.get("last_notified_at")),
        acked_by=text("acked_by"),
        acked_at=_opt_float(raw.get("acked_at")),
        silenced_until=_opt_float(raw.get("silenced_until")),
        silenced_by=text("silenced_by"),
    )
