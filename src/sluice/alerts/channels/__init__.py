"""Alert channels (log, Alertmanager-style webhook, Slack) and the dispatcher feeding them.

The dispatcher exists so that a sick receiver can never slow Sluice down: the evaluator
calls :meth:`Dispatcher.submit`, which only puts the batch on one bounded in-memory queue
per channel and returns; a background task per channel sends, retries failures with
exponential backoff and jitter, and eventually gives up with an error log. A channel that
hangs or fails delays only its own queue, never another channel and never the caller.

Webhook URLs are credentials (a Slack incoming webhook's path *is* its token; other
receivers take ``user:password@``): they are never logged in full, including by httpx's
own request log, which a filter masks.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from sluice.alerts.config import AlertSettings, mask_url
from sluice.alerts.model import Notification
from sluice.alerts.rules import format_value

__all__ = [
    "Channel",
    "ChannelError",
    "ChannelStats",
    "Dispatcher",
    "LogChannel",
    "SlackChannel",
    "WebhookChannel",
    "alertmanager_payload",
    "channels_from_settings",
    "slack_text",
]

log = logging.getLogger("sluice.alerts")

_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert still firing


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


# -- keeping secrets out of logs ---------------------------------------------------------


class _SecretFilter(logging.Filter):
    """Masks registered secrets in records of a library logger (httpx logs every URL)."""

    def __init__(self) -> None:
        super().__init__("")
        self.replacements: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.replacements:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging module's business, not ours
            return True
        masked = message
        for secret in sorted(self.replacements, key=len, reverse=True):
            masked = masked.replace(secret, self.replacements[secret])
        if masked != message:
            record.msg, record.args = masked, None
        return True


_SECRETS = _SecretFilter()
logging.getLogger("httpx").addFilter(_SECRETS)


def _register_secret(url: str, masked: str, *, hide_path: bool) -> None:
    """Remember what must never appear in a library log line, and what to show instead.

    The whole URL, plus its parts on their own (httpx may print the URL normalised): the
    password, query values and, with ``hide_path``, the path after its first segment.
    """
    _SECRETS.replacements[url] = masked
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return
    pieces = [password or ""]
    pieces += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    if hide_path:
        pieces.append(parts.path.lstrip("/").partition("/")[2])
    for piece in pieces:
        for variant in {piece, unquote(piece)}:
            if len(variant) >= 4:  # never mask common short strings all over httpx's logs
                _SECRETS.replacements[variant] = "***"


# -- rendering ---------------------------------------------------------------------------


def _rfc3339(timestamp: float | None) -> str:
    if timestamp is None:
        return _ZERO_TIME
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _status(notification: Notification) -> str:
    return "resolved" if notification.kind == "resolved" else "firing"


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
                "status": _status(note),
                "labels": labels,
                "annotations": {
                    "summary": snap.summary,
                    "value": format_value(snap.value, snap.unit),
                    "threshold": format_value(snap.threshold, snap.unit),
                    "event": note.kind,
                },
                "startsAt": _rfc3339(snap.started_at),
                "endsAt": _rfc3339(snap.ended_at) if note.kind == "resolved" else _ZERO_TIME,
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


_SLACK_HEAD = {
    "firing": "FIRING",
    "escalated": "ESCALATED",
    "deescalated": "DE-ESCALATED",
    "repeat": "STILL FIRING",
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
            f"{snap.summary} (since {_rfc3339(snap.started_at)})"
        )
    return "\n".join(lines)


# -- channels ----------------------------------------------------------------------------


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
                "status": _status(note),
                "alertname": snap.rule,
                "severity": snap.severity,
                "queue": snap.labels.get("queue"),
                "value": snap.value,
                "threshold": snap.threshold,
                "fingerprint": snap.fingerprint,
                "started_at": _rfc3339(snap.started_at),
                "ended_at": _rfc3339(snap.ended_at) if note.kind == "resolved" else None,
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


class _HttpChannel:
    """POSTs JSON to a URL with bounded timeouts; errors carry only the masked URL."""

    name = "http"

    def __init__(self, url: str, *, timeout_s: float, hide_path: bool) -> None:
        self._url = url
        self.target = mask_url(url, hide_path=hide_path)
        self._timeout = httpx.Timeout(timeout_s)
        _register_secret(url, self.target, hide_path=hide_path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"

    async def _request(self, method: str, json_body: Any | None) -> httpx.Response:
        try:
            async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
                return await client.request(method, self._url, json=json_body)
        except httpx.TimeoutException:
            raise ChannelError(f"{self.name} {self.target}: timed out") from None
        except httpx.HTTPError as exc:
            raise ChannelError(f"{self.name} {self.target}: {type(exc).__name__}") from None

    async def _post(self, body: Any) -> None:
        response = await self._request("POST", body)
        if not response.is_success:
            raise ChannelError(f"{self.name} {self.target}: HTTP {response.status_code}")


class WebhookChannel(_HttpChannel):
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


class SlackChannel(_HttpChannel):
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


def channels_from_settings(settings: AlertSettings) -> list[Channel]:
    """The log channel, plus the webhook and Slack channels that are configured."""
    channels: list[Channel] = [LogChannel()]
    if settings.webhook_url:
        channels.append(WebhookChannel(settings.webhook_url, timeout_s=settings.channel_timeout_s))
    slack = settings.slack_url()
    if slack:
        channels.append(SlackChannel(slack, timeout_s=settings.channel_timeout_s))
    return channels


# -- dispatching -------------------------------------------------------------------------


@dataclass
class ChannelStats:
    """Per-channel counters, for /metrics and tests."""

    delivered: int = 0  # notifications
    failed_attempts: int = 0  # send() calls that raised
    dropped: int = 0  # notifications given up on (attempts exhausted or queue overflow)


class Dispatcher:
    """Fan batches of notifications out to channels without ever blocking the caller."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        queue_size: int = 100,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1 or queue_size < 1 or backoff_s <= 0 or max_backoff_s <= 0:
            raise ValueError("max_attempts, queue_size and backoffs must be positive")
        self.channels = tuple(channels)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._queue_size = queue_size
        self._rng = rng or random.Random()
        self._names = _unique_names(self.channels)
        self.stats: dict[str, ChannelStats] = {name: ChannelStats() for name in self._names}
        self._queues: list[asyncio.Queue[tuple[Notification, ...]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @classmethod
    def from_settings(cls, settings: AlertSettings) -> Dispatcher:
        return cls(
            channels_from_settings(settings),
            max_attempts=settings.channel_max_attempts,
            backoff_s=settings.channel_backoff_s,
        )

    def submit(self, notifications: Sequence[Notification]) -> None:
        """Queue a batch for every channel and return at once (no I/O, no awaiting).

        Must be called from the event loop's thread. A full queue (a channel failing for
        a long time) drops its *oldest* batch with an error log: the newest state matters.
        """
        if not notifications:
            return
        if self._closed:
            log.warning("alert dispatcher closed: %d notification(s) dropped", len(notifications))
            return
        self._start()
        batch = tuple(notifications)
        for name, queue in zip(self._names, self._queues, strict=True):
            if queue.full():
                old = queue.get_nowait()
                queue.task_done()
                self.stats[name].dropped += len(old)
                log.error(
                    "alert channel %s is not keeping up: dropped %d old notification(s)",
                    name,
                    len(old),
                )
            queue.put_nowait(batch)

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 - a deadline, not a cancel
        """Wait until every queued batch was delivered or given up; False on timeout."""
        if not self._queues:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*(q.join() for q in self._queues)), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - as flush
        """Stop accepting, give queued batches up to ``timeout`` seconds, then stop."""
        self._closed = True
        if not self._tasks:
            return
        if not await self.flush(timeout):
            left = sum(q.qsize() for q in self._queues)
            log.error("alert dispatcher closing with %d undelivered batch(es)", left)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def _start(self) -> None:
        if self._tasks:
            return
        self._queues = [asyncio.Queue(self._queue_size) for _ in self.channels]
        self._tasks = [
            asyncio.create_task(self._worker(i), name=f"sluice-alert-channel-{name}")
            for i, name in enumerate(self._names)
        ]

    async def _worker(self, index: int) -> None:
        channel, name, queue = self.channels[index], self._names[index], self._queues[index]
        while True:
            batch = await queue.get()
            try:
                await self._deliver(channel, name, batch)
            finally:
                queue.task_done()

    async def _deliver(self, channel: Channel, name: str, batch: tuple[Notification, ...]) -> None:
        stats = self.stats[name]
        for attempt in range(1, self.max_attempts + 1):
            try:
                await channel.send(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                stats.failed_attempts += 1
                reason = str(exc) if isinstance(exc, ChannelError) else type(exc).__name__
                if attempt == self.max_attempts:
                    stats.dropped += len(batch)
                    log.error(
                        "alert channel %s failed %d times, dropped %d notification(s): %s",
                        name,
                        attempt,
                        len(batch),
                        reason,
                        extra={"fields": {"channel": name, "dropped": len(batch)}},
                    )
                    return
                delay = self._delay(attempt)
                log.warning(
                    "alert channel %s attempt %d/%d failed (%s), retrying in %.2f s",
                    name,
                    attempt,
                    self.max_attempts,
                    reason,
                    delay,
                )
                await asyncio.sleep(delay)
            else:
                stats.delivered += len(batch)
                return

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": between half and all of the step.

        Jitter keeps many processes' retries (after a receiver outage) from arriving in
        lockstep; keeping half the step keeps the backoff actually growing.
        """
        step = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        return step / 2 + self._rng.uniform(0, step / 2)


def _unique_names(channels: Sequence[Channel]) -> list[str]:
    names: list[str] = []
    for channel in channels:
        name, n = channel.name, 2
        while name in names:
            name, n = f"{channel.name}-{n}", n + 1
        names.append(name)
    return names
