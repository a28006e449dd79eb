"""Alerting: rules over the monitoring signals, their lifecycle, and who gets told.

A package of its own because it is a different job from :mod:`sluice.monitor`: monitoring
measures (windows, histograms, the signals), alerting decides from those numbers whether to
wake someone and tells them. The alert engine's public names are re-exported here, so
``from sluice.alerts import AlertEngine, Notification`` works without knowing which module
defines them.
"""

from __future__ import annotations

from sluice.alerts.engine import (
    STATE_VERSION,
    AlertEngine,
    AlertSnapshot,
    HistoryEntry,
    Notification,
    NotificationKind,
    Status,
    fingerprint,
)

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
