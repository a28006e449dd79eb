"""The Slack channel: one readable line per notification on an incoming webhook.

The webhook URL is the credential (its path is the token), so it is masked with its path
hidden everywhere it could be shown.
"""

from __future__ import annotations

from collections.abc import Sequence

from sluice.alerts.channels.base import ChannelError, rfc3339
from sluice.alerts.channels.http import HttpChannel
from sluice.alerts.model import Notification
from sluice.alerts.rules import format_value

__all__ = ["SlackChannel", "slack_text"]

_SLACK_HEAD = {
    "firing": "FIRING",
    "escalated": "ESCALATED",
    "deescalated": "DE-ESCALATED",
    "repeat": "STILL FIRING",
    "refresh": "STILL FIRING",
    "resolved": "RESOLVED",
}


def slack_text(notifications: Sequence[Notification]) -> str:
    """One readable line per notification, in Slack's mrkdwn."""
    lines: list[str] = []
    for note in notifications:
        snap = note.alert
        queue = snap.labels.get("queue", "")
        value = format_value(snap.value, snap.unit)
        threshold = format_value(snap.threshold, snap.unit)
        if note.kind == "resolved":
            icon = ":white_check_mark:"
            detail = f"was {snap.severity}, now {value} (threshold {threshold})"
        else:
            icon = ":rotating_light:" if snap.severity == "critical" else ":warning:"
            detail = f"{snap.severity}: {value}, threshold {threshold}"
        lines.append(
            f"{icon} *{_SLACK_HEAD[note.kind]}* `{snap.rule}` on queue `{queue}`, {detail}. "
            f"{snap.summary} (since {rfc3339(snap.started_at)})"
        )
    return "\n".join(lines)


class SlackChannel(HttpChannel):
    """POSTs ``{"text": ...}`` to a Slack incoming webhook."""

    name = "slack"

    def __init__(self, webhook_url: str, *, timeout_s: float = 5.0) -> None:
        super().__init__(webhook_url, timeout_s=timeout_s, hide_path=True)

    async def send(self, notifications: Sequence[Notification]) -> None:
        await self._post({"text": slack_text(notifications)})

    async def check(self) -> str | None:
        """POST an empty payload: Slack refuses it without posting anything.

        Slack answers 400 (``no_text`` / ``invalid_payload``) for a valid webhook and 403,
        404 or 410 (``invalid_token``, ``no_service``, ``channel_is_archived``) for one that
        cannot work, which is exactly what validation needs to know.
        """
        try:
            response = await self._request("POST", {})
        except ChannelError as exc:
            return str(exc)
        if response.status_code in (403, 404, 410):
            reason = response.text.strip()[:100] or "refused"
            return f"{self.name} {self.target}: HTTP {response.status_code} ({reason})"
        if response.status_code >= 500:
            return f"{self.name} {self.target}: HTTP {response.status_code}"
        return None
