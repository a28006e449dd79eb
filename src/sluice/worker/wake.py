"""How the fetch loop waits when it has nothing to do.

Two things can give it work: something in the worker (a slot finished and its
acknowledgement must go out, a job is to be handed back, the worker stops), announced by
``slots.changed``; or something in Redis (a producer enqueued, another worker finished a
turn and freed a lane, a retry's back-off passed), announced by a token on the queue's
``wake`` list. The loop blocks in BLPOP on that list on a connection of its own, never one
of the shared pool, which a blocked read would hold hostage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sluice.queue.queue import Queue
from sluice.redis.cluster import RedisClient, close_dedicated
from sluice.worker.types import REDIS_DOWN

log = logging.getLogger("sluice.worker")


class Waker:
    """The fetch loop's ways to wait: for a wake token, for a change, or for a while."""

    def __init__(self, queue: Queue, changed: asyncio.Event, *, idle_poll_s: float) -> None:
        self.queue = queue
        self._changed = changed
        self._idle_poll_s = idle_poll_s
        self._blocker: RedisClient | None = None
        self._blpop: asyncio.Task[Any] | None = None

    def open(self) -> None:
        """Open the dedicated connection (its reads may block for up to a poll)."""
        self._blocker = self.queue.blocking_client(read_timeout_s=self._idle_poll_s + 5)

    async def reopen(self) -> None:
        """A fresh connection after a Redis error (the old one may be broken)."""
        await self.close()
        self.open()

    async def wait_for_wake(self, block_s: float) -> None:
        """BLPOP a wake token on the dedicated connection, or return early when a job of
        ours finishes (its ack must go out now), the worker stops, or ``block_s`` passes.

        The BLPOP outlives a wait that ended for another reason (cancelling a blocked read
        would break its connection); a token it received meanwhile counts as a wake-up at
        the next wait, so none is lost."""
        assert self._blocker is not None
        if self._blpop is not None and self._blpop.done():
            self._consume_blpop()
            return
        if self._blpop is None:
            self._blpop = asyncio.ensure_future(
                self._blocker.blpop(self.queue.wake_keys, timeout=max(0.01, block_s))
            )
        changed = asyncio.create_task(self._changed.wait())
        try:
            await asyncio.wait(
                {self._blpop, changed}, timeout=block_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            changed.cancel()
        self._changed.clear()
        if self._blpop.done():
            self._consume_blpop()

    def _consume_blpop(self) -> None:
        blpop, self._blpop = self._blpop, None
        if blpop is not None and not blpop.cancelled() and (exc := blpop.exception()):
            if isinstance(exc, REDIS_DOWN):
                raise exc
            log.error("wake-up read failed: %r", exc)

    async def sleep_unless_changed(self, at_most_s: float | None) -> None:
        """Wait for a change in the worker, at most ``at_most_s`` (None: no limit)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), at_most_s)
        self._changed.clear()

    async def wait_changed(self) -> None:
        """Wait for a change in the worker."""
        await self._changed.wait()
        self._changed.clear()

    async def close(self) -> None:
        """Stop a pending BLPOP and close the dedicated connection."""
        if self._blpop is not None and not self._blpop.done():
            self._blpop.cancel()
            with contextlib.suppress(asyncio.CancelledError, *REDIS_DOWN):
                await self._blpop
        self._blpop = None
        if self._blocker is not None:
            with contextlib.suppress(*REDIS_DOWN):
                await close_dedicated(self._blocker)
            self._blocker = None
