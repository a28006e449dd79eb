"""All alerts of one queue: feed signals and a clock, get what receivers must be told.

No I/O here: the evaluator (:mod:`sluice.alerts.evaluator`) feeds signals and the time,
persists the state (:mod:`sluice.alerts.store`) and hands notifications to the
channels. Keeping the machine pure is what lets the tests drive hours of flapping input
with an injected clock in milliseconds, and lets a new leader continue exactly where the
old one stopped (:meth:`AlertEngine.state_to_json` / :meth:`AlertEngine.restore`). How one
alert moves between states is :mod:`sluice.alerts.lifecycle`; this module keeps the alerts
of every rule, turns their moves into notifications and applies operator actions.

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

import math
from collections.abc import Sequence
from dataclasses import replace

from sluice.alerts.config import AlertSettings
from sluice.alerts.lifecycle import advance, update_timers
from sluice.alerts.model import (
    AlertSnapshot,
    HistoryEntry,
    Notification,
    NotificationKind,
    fingerprint,
)
from sluice.alerts.rules import Rule, Severity, severity_rank
from sluice.alerts.state import AlertState, dump_state, load_alert, stored_alerts
from sluice.monitor.signals import Signals

__all__ = ["AlertEngine"]


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
        self._alerts: dict[str, AlertState] = {}
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
            update_timers(rule, alert, level, value, now)
            advance(rule, alert, level, now, self.settings.cooldown_s, self._record)
            if alert.silenced_until is not None and now >= alert.silenced_until:
                alert.silenced_until = alert.silenced_by = None
                self._record(alert, "silence_expired", now)
            if alert.silenced_until is None:
                note = self._notification(alert, now)
                if note is not None:
                    notifications.append(note)
        return notifications

    def _notification(self, alert: AlertState, now: float) -> Notification | None:
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
        self._alerts = {
            fp: AlertState(rule=r.name, fingerprint=fp) for fp, r in self._rules.items()
        }

    def state_to_json(self) -> str:
        """The whole state as JSON, for the next leader."""
        return dump_state(self.queue_name, self._alerts)

    def restore(self, text: str | bytes) -> None:
        """Replace the state with one from :meth:`state_to_json`.

        Alerts of rules that no longer exist are dropped; new rules start inactive.
        """
        stored = stored_alerts(text, self.queue_name)
        self.reset()
        for fp, raw in stored.items():
            rule = self._rules.get(fp)
            if rule is not None and isinstance(raw, dict):
                self._alerts[fp] = load_alert(rule, fp, raw)

    @classmethod
    def from_json(
        cls, text: str | bytes, rules: Sequence[Rule], settings: AlertSettings, queue_name: str
    ) -> AlertEngine:
        engine = cls(rules, settings, queue_name)
        engine.restore(text)
        return engine

    # -- helpers -----------------------------------------------------------------------

    def _snapshot(self, alert: AlertState) -> AlertSnapshot:
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
        alert: AlertState,
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
