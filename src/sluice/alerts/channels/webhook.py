"""The webhook channel: Alertmanager's webhook body, so receivers written for Alertmanager
(incident tools, chat bridges) take Sluice's alerts without an adapter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sluice.alerts.channels.base import ZERO_TIME, ChannelError, receiver_status, rfc3339
from sluice.alerts.channels.http import HttpChannel
from sluice.alerts.model import Notification
from sluice.alerts.rules import format_value

__all__ = ["WebhookChannel", "alertmanager_payload"]


def alertmanager_payload(
    notifications: Sequence[Notification], receiver: str = "sluice"
) -> dict[str, Any]:
    """The body Alertmanager posts to webhook receivers (version 4), for one batch.

    Receivers written for Alertmanager (incident tools, chat bridges) accept it as is.
    Annotations are strings, as in Alertmanager; ``event`` tells firing from escalated,
    de-escalated and repeat, which all have status "firing".
    """
    alerts: list[dict[str, Any]] = []
    for note in notifications:
        snap = note.alert
        labels = {"alertname": snap.rule, "queue": snap.labels.get("queue", "")}
        if snap.severity is not None:
            labels["severity"] = snap.severity
        alerts.append(
            {
                "status": receiver_status(note),
                "labels": labels,
                "annotations": {
                    "summary": snap.summary,
                    "value": format_value(snap.value, snap.unit),
                    "threshold": format_value(snap.threshold, snap.unit),
                    "event": note.kind,
                },
                "startsAt": rfc3339(snap.started_at),
                "endsAt": rfc3339(snap.ended_at) if note.kind == "resolved" else ZERO_TIME,
                "generatorURL": "",
                "fingerprint": snap.fingerprint,
            }
        )
    label_sets = [a["labels"] for a in alerts]
    common = (
        {k: v for k, v in label_sets[0].items() if all(ls.get(k) == v for ls in label_sets)}
        if label_sets
        else {}
    )
    queues = sorted({ls["queue"] for ls in label_sets})
    group_labels = {"queue": queues[0]} if len(queues) == 1 else {}
    return {
        "version": "4",
        "groupKey": "{}:" + "{" + ",".join(f'{k}="{v}"' for k, v in group_labels.items()) + "}",
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": alerts,
    }


class WebhookChannel(HttpChannel):
    """POSTs the Alertmanager webhook body (:func:`alertmanager_payload`) to ``url``."""

    name = "webhook"

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        super().__init__(url, timeout_s=timeout_s, hide_path=False)

    async def send(self, notifications: Sequence[Notification]) -> None:
        await self._post(alertmanager_payload(notifications))

    async def check(self) -> str | None:
        """HEAD the URL: any answer but 404/410 means a receiver is listening.

        A HEAD instead of a test alert, so validation never pages anyone.
        """
        try:
            response = await self._request("HEAD", None)
        except ChannelError as exc:
            return str(exc)
        if response.status_code in (404, 410):
            return f"{self.name} {self.target}: HTTP {response.status_code} (wrong URL?)"
        return None
