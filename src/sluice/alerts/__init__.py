"""Alerting: rules over the monitoring signals, their lifecycle, and who gets told.

A package of its own because it is a different job from :mod:`sluice.monitor`: monitoring
measures (windows, histograms, the signals), alerting decides from those numbers whether to
wake someone and tells them. One module per job:

* ``config``     the ``SLUICE_ALERT_*`` settings (thresholds, timings, channel URLs);
* ``rules``      which signal crosses which threshold (rules are data);
* ``lifecycle``  how one alert moves between inactive, pending, firing and resolved;
* ``state``      the per-alert state a leader saves and the next one reads back;
* ``model``      what the engine hands out: snapshots, notifications, history entries;
* ``engine``     all alerts of one queue: evaluate, notify, ack, silence (no I/O);
* ``store``      state, history and operator commands in Redis;
* ``evaluator``  the leader-elected loop driving the engine;
* ``channels``   log, webhook and Slack receivers, and the dispatcher that feeds them;
* ``service``    one process's alerting, wired together for the API and the CLI.

The engine's public names are re-exported here (they were ``sluice.alerts``), so
``from sluice.alerts import AlertEngine, Notification`` works without knowing which module
defines them.
"""

from __future__ import annotations

from sluice.alerts.engine import AlertEngine
from sluice.alerts.model import (
    AlertSnapshot,
    HistoryEntry,
    Notification,
    NotificationKind,
    Status,
    fingerprint,
)
from sluice.alerts.state import STATE_VERSION

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
