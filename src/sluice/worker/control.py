"""The queue's controls as a worker obeys them: pause, drain, cancel, live rate limit and
live concurrency (an operator's, or this worker's share of the adaptive target).

Pause, drain, cancel and a live rate limit change what a worker may start *now*, but a
worker that is busy does not ask Redis until a slot frees, and by then its prefetch buffer
would already have started jobs the queue no longer wants. The scripts that change these
PUBLISH on ``sluice:{queue}:control``; :func:`listen` hears it on a connection of its own
(never one of the shared pool) and :class:`Controls` acts on it within a round trip: it
hands the buffered jobs concerned back. The heartbeat reads the same state every beat
(:meth:`Controls.reload`), so a message lost while the listener reconnects delays the
reaction by at most one heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from sluice.queue.queue import Queue
from sluice.redis.cluster import close_dedicated, is_cluster
from sluice.worker.slots import Slots
from sluice.worker.types import raise_if_cancelled

log = logging.getLogger("sluice.worker")


class Controls:
    """Applies the queue's controls and live settings to the worker's slots."""

    def __init__(
        self,
        queue: Queue,
        slots: Slots,
        *,
        configured_concurrency: int,
        share: Callable[[], Awaitable[int | None]] | None = None,
    ) -> None:
        self.queue = queue
        self._slots = slots
        self._configured_concurrency = configured_concurrency
        # Adaptive mode: this worker's share of the controller's target (None: static).
        self._share = share

    def on_message(self, message: str) -> None:
        """A control message heard on the channel (see :func:`listen`)."""
        slots = self._slots
        if message in ("pause", "drain"):
            slots.paused = slots.paused or message == "pause"
            revoked = slots.buffer.take_all()
        elif message.startswith("cancel:"):
            revoked = slots.buffer.take_conversation(message.removeprefix("cancel:"))
        elif message == "rate":
            asyncio.get_running_loop().create_task(self.reload())
            revoked = slots.buffer.take_all()
        elif message == "concurrency":  # a new adaptive target: take the new share now
            asyncio.get_running_loop().create_task(self.reload())
            return
        else:
            return
        slots.hand_back.extend(e.job for e in revoked)
        slots.changed.set()

    async def reload(self) -> dict[str, int | None]:
        """Read the queue's live settings and pause, and apply them; returns the settings."""
        slots = self._slots
        live = await self.queue.live_settings()
        slots.live_rate_limit = live["rate_limit"]
        paused = await self.queue.is_paused()
        if paused and not slots.paused:
            self.on_message("pause")  # the control message was missed: act on it now
        slots.paused = paused
        # An operator's live override wins over the adaptive share, which wins over the
        # configured slots (docs/adaptive-concurrency.md).
        wanted, why = live["concurrency"], "live setting"
        if wanted is None and self._share is not None:
            wanted, why = await self._share(), "adaptive share"
        if wanted is None:
            wanted, why = self._configured_concurrency, "configured"
        if wanted != slots.concurrency:
            log.info("concurrency %d -> %d (%s)", slots.concurrency, wanted, why)
            slots.concurrency = wanted
            slots.changed.set()
        return live


async def listen(
    queue: Queue, on_message: Callable[[str], None], subscribed: asyncio.Event
) -> None:
    """Call ``on_message`` with each control message ("pause", "drain", "cancel:<key>",
    "rate") until cancelled; reconnects with a capped back-off. ``subscribed`` is set once
    the subscription stands (the worker waits for it before it reserves anything)."""
    failures = 0
    while True:
        client = queue.blocking_client(read_timeout_s=None)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            if is_cluster(client):
                # A cluster's pub/sub picks its node from the slot map, which a new client
                # reads on its first command: read it now. Any node will do (PUBLISH is
                # broadcast); the channel's slot owner is the one chosen.
                await client.initialize()
            await queue.current_engines()  # a partition's channel is under its recorded tag
            await pubsub.subscribe(*queue.control_channels)
            subscribed.set()
            failures = 0
            while True:
                raise_if_cancelled()
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    on_message(data.decode() if isinstance(data, bytes) else str(data))
        except (RedisError, OSError) as exc:
            raise_if_cancelled()
            failures += 1
            delay = min(1.0, 0.1 * 2 ** min(failures, 4))
            log.debug("control channel lost (%r); again in %.1f s", exc, delay)
            await asyncio.sleep(delay)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await close_dedicated(client)
