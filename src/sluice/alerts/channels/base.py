"""What every alert channel shares: the protocol, the error, and how times are written.

The protocol is what the dispatcher needs from a channel and nothing more, so a new kind of
receiver is one small class. Times are RFC 3339 in UTC with milliseconds, as Alertmanager
writes them, so every channel shows the same instant the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from sluice.alerts.model import AlertSnapshot, Notification

__all__ = [
    "ZERO_TIME",
    "Channel",
    "ChannelError",
    "ResendingChannel",
    "receiver_status",
    "rfc3339",
]

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert still firing


class ChannelError(Exception):
    """A delivery failure; its message is safe to log (URLs masked)."""


@runtime_checkable
class Channel(Protocol):
    """Somewhere notifications go. ``send`` raises on failure; the dispatcher retries."""

    name: str

    async def send(self, notifications: Sequence[Notification]) -> None: ...

    async def check(self) -> str | None:
        """A dry-run reachability check for ``sluice validate``: None if fine, else why not."""
        ...


@runtime_checkable
class ResendingChannel(Channel, Protocol):
    """A channel whose receiver forgets an alert that is not sent again (Alertmanager).

    After every evaluation the dispatcher hands it the evaluation's notifications and every
    alert's snapshot; it returns what to send now: the notifications plus whatever re-sends
    are due. No I/O: it runs on the evaluator's path.
    """

    def batch(
        self, notifications: Sequence[Notification], alerts: Sequence[AlertSnapshot], now: float
    ) -> list[Notification]: ...


def rfc3339(timestamp: float | None) -> str:
    if timestamp is None:
        return ZERO_TIME
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def receiver_status(notification: Notification) -> str:
    """The receiver-facing status: escalations and repeats are still "firing"."""
    return "resolved" if notification.kind == "resolved" else "firing"
