"""The Alertmanager channel: Sluice's alerts posted to Alertmanager's own API, the way
Prometheus posts its alerts, so Alertmanager's routing, grouping, inhibition, silences and
receivers apply to them.

Each rule below follows a real behaviour of Alertmanager (prometheus/alertmanager) or of
Prometheus, its reference client (prometheus/prometheus); the sources are named:

* **The request.** ``POST <url>/api/v2/alerts`` with a JSON list of ``postableAlert``:
  ``labels`` (required), ``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``
  (``api/v2/openapi.yaml``, definitions ``postableAlerts``, ``postableAlert``, ``alert``).
  ``generatorURL`` is ``format: uri``, so it is left out rather than sent empty.
* **Identity.** Alertmanager deduplicates on the label set and keeps the latest
  annotations (``docs/clients.md``). The labels are the engine's (``alertname``, ``queue``,
  ``severity``), as in the webhook channel; ``severity`` is a label because Alertmanager
  routes on it. So an escalation (or de-escalation) is a new alert to Alertmanager: the
  previous severity's alert is ended (``endsAt`` now) in the same request.
* **Re-sending.** Clients "are expected to continuously re-send alerts as long as they are
  still active" (``docs/clients.md``). Prometheus re-sends every firing alert every
  ``--rules.alert.resend-delay`` (1 min by default) and a resolved one as soon as it
  resolves (``rules/alerting.go``, ``needsSending``). Here: every firing alert every
  ``SLUICE_ALERT_ALERTMANAGER_RESEND_S`` (60 s) from the evaluation leader, with the
  evaluation's own notifications going out at once.
* **endsAt of a firing alert.** Prometheus sets it to ``now + 4 × max(evaluation interval,
  resend delay)`` (``rules/alerting.go``, ``sendAlerts``: ``ValidUntil``), so an alert
  whose sender died resolves by itself after a few missed re-sends. Same rule here. Without
  an ``endsAt`` Alertmanager would apply its ``resolve_timeout`` (``api/v2/api.go``,
  ``postAlertsHandler``); with one it never does.
* **Resolution.** ``endsAt`` = the time the alert resolved (Prometheus sends
  ``ResolvedAt``); once it has passed, Alertmanager no longer lists the alert as active
  (``api/v2/api.go``, ``alertFilter``) and tells receivers with ``send_resolved``. It is
  sent at the evaluation that resolves the alert even while the engine holds its own
  ``resolved`` notice for ``COOLDOWN_S``: Alertmanager does its own flap damping
  (``group_interval``). Prometheus keeps re-sending resolved alerts for 15 minutes
  (``rules/alerting.go``, ``resolvedRetention``) so a lost request cannot leave an alert
  firing until its ``endsAt``; so does this channel.
* **Silences.** A silenced Sluice alert is not sent at all, re-sends included, so
  Alertmanager resolves it when its ``endsAt`` passes. Silence in Alertmanager instead
  when it is the receiver. An acknowledged alert keeps being re-sent (an acknowledgement
  stops Sluice's repeats to people, not Alertmanager's view of what fires).

Only the leading evaluator sends. A new leader re-sends every firing alert at its first
evaluation, so a takeover never lets an alert time out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sluice.alerts.channels.base import ChannelError, rfc3339
from sluice.alerts.channels.http import HttpChannel
from sluice.alerts.model import AlertSnapshot, Notification
from sluice.alerts.rules import SEVERITIES, format_value

__all__ = [
    "ALERTS_PATH",
    "RESOLVED_RETENTION_S",
    "STATUS_PATH",
    "AlertmanagerChannel",
    "postable_alert",
]

ALERTS_PATH = "/api/v2/alerts"
STATUS_PATH = "/api/v2/status"
#: Prometheus's resolvedRetention: how long a resolved alert is still sent.
RESOLVED_RETENTION_S = 15 * 60.0
#: Prometheus's ValidUntil factor: endsAt = now + LEASE_FACTOR x max(interval, resend).
LEASE_FACTOR = 4


def postable_alert(
    snap: AlertSnapshot,
    *,
    ends_at: float,
    severity: str | None = None,
    generator_url: str | None = None,
) -> dict[str, Any]:
    """One ``postableAlert`` (api/v2/openapi.yaml). ``severity`` overrides the snapshot's
    (to end the alert of a severity it no longer has)."""
    labels = {"alertname": snap.rule, "queue": snap.labels.get("queue", "")}
    chosen = severity if severity is not None else snap.severity
    if chosen is not None:
        labels["severity"] = chosen
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {
            "summary": snap.summary,
            "value": format_value(snap.value, snap.unit),
            "threshold": format_value(snap.threshold, snap.unit),
        },
        "endsAt": rfc3339(ends_at),
    }
    if snap.started_at is not None:
        alert["startsAt"] = rfc3339(min(snap.started_at, ends_at))
    if generator_url:
        alert["generatorURL"] = generator_url
    return alert


class AlertmanagerChannel(HttpChannel):
    """POSTs alerts to one Alertmanager's ``/api/v2/alerts`` and keeps them alive there.

    ``url`` is the Alertmanager's base URL (``http://alertmanager:9093``; a path prefix
    such as ``--web.route-prefix`` is kept). For a cluster, configure one channel per
    member, as Prometheus does, never a load balancer in front of them.
    """

    name = "alertmanager"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        resend_s: float = 60.0,
        evaluation_interval_s: float = 5.0,
        generator_url: str | None = None,
    ) -> None:
        if resend_s <= 0 or evaluation_interval_s <= 0:
            raise ValueError("resend_s and evaluation_interval_s must be positive")
        super().__init__(_endpoint(url, ALERTS_PATH), timeout_s=timeout_s, hide_path=False)
        self._status_url = _endpoint(url, STATUS_PATH)
        self.resend_s = resend_s
        self.lease_s = LEASE_FACTOR * max(resend_s, evaluation_interval_s)
        self.generator_url = generator_url
        self._last_resend: float | None = None
        self._told_resolved: dict[tuple[str, float], float] = {}  # (fp, ended) -> ended

    # -- what to send ------------------------------------------------------------------

    def batch(
        self, notifications: Sequence[Notification], alerts: Sequence[AlertSnapshot], now: float
    ) -> list[Notification]:
        """The evaluation's notifications, plus: every firing alert when a re-send is due,
        and every alert that resolved since it was last sent (at once, not after the
        engine's cooldown); resolved alerts are re-sent with the firing ones for
        :data:`RESOLVED_RETENTION_S`. Silenced alerts are left out."""
        out = list(notifications)
        told = {note.alert.fingerprint for note in notifications}
        for note in notifications:
            if note.kind == "resolved" and note.alert.ended_at is not None:
                self._told_resolved[(note.alert.fingerprint, note.alert.ended_at)] = (
                    note.alert.ended_at
                )
        due = self._last_resend is None or now - self._last_resend >= self.resend_s
        for snap in alerts:
            if snap.fingerprint in told or _silenced(snap, now):
                continue
            if snap.status == "firing":
                if due:
                    out.append(Notification("refresh", snap, now))
            elif snap.status == "resolved" and snap.ended_at is not None:
                if now - snap.ended_at > RESOLVED_RETENTION_S:
                    continue
                key = (snap.fingerprint, snap.ended_at)
                if due or key not in self._told_resolved:
                    self._told_resolved[key] = snap.ended_at
                    out.append(Notification("resolved", snap, now))
        if due:
            self._last_resend = now
        cutoff = now - RESOLVED_RETENTION_S
        self._told_resolved = {k: v for k, v in self._told_resolved.items() if v >= cutoff}
        return out

    def payload(self, notifications: Sequence[Notification]) -> list[dict[str, Any]]:
        """The request body for a batch: a list of ``postableAlert``."""
        alerts: list[dict[str, Any]] = []
        for note in notifications:
            snap = note.alert
            if note.kind == "resolved":
                ended = snap.ended_at if snap.ended_at is not None else note.at
                alerts.append(postable_alert(snap, ends_at=ended, generator_url=self.generator_url))
                continue
            alerts.append(
                postable_alert(
                    snap, ends_at=note.at + self.lease_s, generator_url=self.generator_url
                )
            )
            if note.kind in ("escalated", "deescalated") and snap.severity is not None:
                # The severity it had is another alert to Alertmanager: end that one now.
                previous = next(s for s in SEVERITIES if s != snap.severity)
                alerts.append(
                    postable_alert(
                        snap, ends_at=note.at, severity=previous, generator_url=self.generator_url
                    )
                )
        return alerts

    # -- the channel protocol ----------------------------------------------------------

    async def send(self, notifications: Sequence[Notification]) -> None:
        if not notifications:
            return
        response = await self._request("POST", self.payload(notifications))
        if not response.is_success:
            reason = response.text.strip().replace("\n", " ")[:200]
            detail = f" ({reason})" if reason else ""
            raise ChannelError(f"{self.name} {self.target}: HTTP {response.status_code}{detail}")

    async def check(self) -> str | None:
        """``GET /api/v2/status``: answered only by an Alertmanager with API v2. Posts
        nothing, so validation never creates an alert."""
        try:
            response = await self._request("GET", None, self._status_url)
        except ChannelError as exc:
            return str(exc)
        if response.status_code == 200:
            return None
        hint = " (not an Alertmanager API v2 base URL?)" if response.status_code == 404 else ""
        return f"{self.name} {self.target}: status HTTP {response.status_code}{hint}"


def _endpoint(base: str, path: str) -> str:
    """``path`` under the base URL's own path (a route prefix), its query kept."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path))


def _silenced(snap: AlertSnapshot, now: float) -> bool:
    return snap.silenced_until is not None and now < snap.silenced_until
