"""What the alert engine hands out: snapshots, notifications, history entries, fingerprints.

These are the only alert types the rest of Sluice sees (channels render notifications, the
store persists history, the API shows snapshots). They are frozen values apart from the
engine's mutable state (:mod:`sluice.alerts.state`), so a receiver or an API handler can
never change an alert by touching what it was given.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeAlias

from sluice.alerts.rules import SEVERITIES, Severity, Unit

__all__ = [
    "STATUSES",
    "AlertSnapshot",
    "HistoryEntry",
    "Notification",
    "NotificationKind",
    "Status",
    "fingerprint",
    "optional_float",
    "severity_of",
    "status_of",
]

Status: TypeAlias = Literal["inactive", "pending", "firing", "resolved"]
#: ``refresh`` is not the engine's: it is a firing alert sent again to a receiver that
#: forgets alerts it is not reminded of (Alertmanager, see ``channels.alertmanager``).
NotificationKind: TypeAlias = Literal[
    "firing", "resolved", "escalated", "deescalated", "repeat", "refresh"
]

STATUSES: tuple[Status, ...] = ("inactive", "pending", "firing", "resolved")


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
            status=status_of(data.get("status")),
            severity=severity_of(data.get("severity")),
            value=optional_float(data.get("value")),
            by=None if data.get("by") is None else str(data["by"]),
            until=optional_float(data.get("until")),
        )


# -- reading stored JSON back (history here, engine state in sluice.alerts.state) ---------


def status_of(value: object) -> Status:
    if value in STATUSES:
        return value
    raise ValueError(f"unknown alert status {value!r}")


def severity_of(value: object) -> Severity | None:
    if value is None:
        return None
    if value in SEVERITIES:
        return value
    raise ValueError(f"unknown severity {value!r}")


def optional_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a number: {value!r}")
