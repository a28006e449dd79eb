"""How the fetch loop waits when it has nothing to do.

Two things can give it work: something in the worker (a slot finished and its
acknowledgement must go out, a job is to be handed back, the worker stops), announced by
``slots.changed``; or something in Redis (a producer enqueued, another worker finished a
turn and freed a lane, a retry's back-off passed), announced by a token on the queue's
``wake`` list. The loop blocks in BLPOP on that list on a connection of its own, never one
of the shared pool, which a blocked read would hold hostage.

A partitioned queue has a wake list per partition. On one server a single BLPOP waits on
all of them. On a cluster a BLPOP may name keys of one slot only, so the waker sends one
BLPOP per slot at once (on the dedicated cluster client, one connection each, each routed
to its slot's master) and wakes at the first token (docs/cluster.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sluice.queue.queue import Queue
from sluice.redis.cluster import RedisClient, close_dedicated, is_cluster
from sluice.worker.types import REDIS_DOWN

log = logging.getLogger("sluice.worker")


class Waker:
    """The fetch loop's ways to wait: for a wake token, for a change, or for a while."""

    def __init__(self, queue: Queue, changed: asyncio.Event, *, idle_poll_s: float) -> None:
        self.queue = queue
        self._changed = changed
        self._idle_poll_s = idle_poll_s
        self._blocker: RedisClient | None = None
        # The pending BLPOPs, by the wake keys each names (one group per slot on a cluster).
        self._blpops: dict[tuple[str, ...], asyncio.Task[Any]] = {}

    def open(self) -> None:
        """Open the dedicated connection(s) (their reads may block for up to a poll)."""
        self._blocker = self.queue.blocking_client(
            read_timeout_s=self._idle_poll_s + 5, connections=len(self.queue.wake_keys)
        )

    async def reopen(self) -> None:
        """A fresh connection after a Redis error (the old one may be broken)."""
        await self.close()
        self.open()

    def _groups(self) -> list[tuple[str, ...]]:
        """The wake keys as BLPOP may name them together: all at once on one server, one
        slot's keys per call on a cluster."""
        keys = self.queue.wake_keys
        blocker = self._blocker
        if not is_cluster(blocker):
            return [tuple(keys)]
        by_slot: dict[int, list[str]] = {}
        for key in keys:
            by_slot.setdefault(blocker.keyslot(key), []).append(key)
        return [tuple(group) for group in by_slot.values()]

    async def wait_for_wake(self, block_s: float) -> None:
        """BLPOP a wake token on the dedicated connection(s), or return early when a job of
        ours finishes (its ack must go out now), the worker stops, or ``block_s`` passes.

        A BLPOP outlives a wait that ended for another reason (cancelling a blocked read
        would break its connection); a token it received meanwhile counts as a wake-up at
        the next wait, so none is lost. One that timed out early (a leftover of an earlier
        wait, on a cluster) is sent again for what is left of this wait."""
        assert self._blocker is not None
        if self._blpops and self._consume_done():
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_s
        changed = asyncio.create_task(self._changed.wait())
        try:
            while True:
                left = deadline - loop.time()
                for group in self._groups():
                    if group not in self._blpops:
                        self._blpops[group] = asyncio.ensure_future(
                            self._blocker.blpop(list(group), timeout=max(0.01, left))
                        )
                await asyncio.wait(
                    {*self._blpops.values(), changed},
                    timeout=max(0.0, left),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if self._consume_done() or changed.done() or loop.time() >= deadline:
                    break
        finally:
            changed.cancel()
        self._changed.clear()

    def _consume_done(self) -> bool:
        """Forget the BLPOPs that ended; True if one brought a token (or failed: the loop
        then asks Redis at once). A connection error is raised (the fetch loop reopens)."""
        woke = False
        down: BaseException | None = None
        for group in [g for g, t in self._blpops.items() if t.done()]:
            blpop = self._blpops.pop(group)
            if blpop.cancelled():
                continue
            exc = blpop.exception()
            if exc is None:
                woke = woke or blpop.result() is not None
            elif isinstance(exc, REDIS_DOWN):
                down = exc
            else:
                log.error("wake-up read failed: %r", exc)
                woke = True
        if down is not None:
            raise down
        return woke

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
        """Stop the pending BLPOPs and close the dedicated connection(s)."""
        pending, self._blpops = list(self._blpops.values()), {}
        for blpop in pending:
            blpop.cancel()
        for blpop in pending:
            with contextlib.suppress(asyncio.CancelledError, *REDIS_DOWN):
                await blpop
        if self._blocker is not None:
            with contextlib.suppress(*REDIS_DOWN):
                await close_dedicated(self._blocker)
            self._blocker = None
