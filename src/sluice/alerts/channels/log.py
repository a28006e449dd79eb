"""The log channel: every notification as one structured log line on ``sluice.alerts``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sluice.alerts.channels.base import receiver_status, rfc3339
from sluice.alerts.model import Notification
from sluice.alerts.rules import format_value

__all__ = ["LogChannel"]

log = logging.getLogger("sluice.alerts")


class LogChannel:
    """One structured log line per notification (``extra={"fields": {...}}``).

    Always on: even without any receiver configured, alerts show in the logs that a log
    pipeline (Loki, CloudWatch) can alert on.
    """

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or log

    async def send(self, notifications: Sequence[Notification]) -> None:
        for note in notifications:
            snap = note.alert
            if note.kind == "resolved":
                level = logging.INFO
            elif snap.severity == "critical":
                level = logging.ERROR
            else:
                level = logging.WARNING
            fields = {
                "event": "alert",
                "kind": note.kind,
                "status": receiver_status(note),
                "alertname": snap.rule,
                "severity": snap.severity,
                "queue": snap.labels.get("queue"),
                "value": snap.value,
                "threshold": snap.threshold,
                "fingerprint": snap.fingerprint,
                "started_at": rfc3339(snap.started_at),
                "ended_at": rfc3339(snap.ended_at) if note.kind == "resolved" else None,
                "summary": snap.summary,
            }
            self._log.log(
                level,
                "alert %s: %s severity=%s queue=%s value=%s threshold=%s",
                note.kind,
                snap.rule,
                snap.severity,
                fields["queue"],
                format_value(snap.value, snap.unit),
                format_value(snap.threshold, snap.unit),
                extra={"fields": fields},
            )

    async def check(self) -> str | None:
        return None
