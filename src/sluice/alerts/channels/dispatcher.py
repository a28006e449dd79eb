"""The dispatcher: hands notifications to every channel without ever blocking the caller.

It exists so that a sick receiver can never slow Sluice down: the evaluator calls
:meth:`Dispatcher.submit`, which only puts the batch on one bounded in-memory queue per
channel and returns; a background task per channel sends, retries failures with
exponential backoff and jitter, and eventually gives up with an error log. A channel that
hangs or fails delays only its own queue, never another channel and never the caller.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sluice.alerts.channels.base import Channel, ChannelError, ResendingChannel
from sluice.alerts.channels.configured import channels_from_settings
from sluice.alerts.config import AlertSettings
from sluice.alerts.model import AlertSnapshot, Notification

__all__ = ["ChannelStats", "Dispatcher"]

log = logging.getLogger("sluice.alerts")


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

    def submit(
        self,
        notifications: Sequence[Notification],
        alerts: Sequence[AlertSnapshot] | None = None,
        now: float | None = None,
    ) -> None:
        """Queue a batch for every channel and return at once (no I/O, no awaiting).

        ``alerts`` (every alert's snapshot after the evaluation at ``now``) is for channels
        whose receiver needs alerts sent again (:class:`ResendingChannel`): they get the
        notifications plus the re-sends due, possibly a batch when there are no
        notifications at all. Without it they get the notifications like the others.

        Must be called from the event loop's thread. A full queue (a channel failing for
        a long time) drops its *oldest* batch with an error log: the newest state matters.
        """
        batch = tuple(notifications)
        batches: list[tuple[Notification, ...]] = []
        for channel in self.channels:
            if alerts is not None and isinstance(channel, ResendingChannel):
                at = time.time() if now is None else now
                batches.append(tuple(channel.batch(batch, alerts, at)))
            else:
                batches.append(batch)
        if not any(batches):
            return
        if self._closed:
            dropped = max(len(items) for items in batches)
            log.warning("alert dispatcher closed: %d notification(s) dropped", dropped)
            return
        self._start()
        for name, queue, items in zip(self._names, self._queues, batches, strict=True):
            if not items:
                continue
            if queue.full():
                old = queue.get_nowait()
                queue.task_done()
                self.stats[name].dropped += len(old)
                log.error(
                    "alert channel %s is not keeping up: dropped %d old notification(s)",
                    name,
                    len(old),
                )
            queue.put_nowait(items)

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
