"""Moving spooled webhooks into the queue once Redis answers again.

The intake spools a verified webhook when Redis is slow or down (:mod:`sluice.service.spool`)
and answers 200; this replayer is what makes that answer true. Order is the point: a
conversation's webhooks go in one after another in arrival order (newer ones of a spooled
conversation were spooled behind it), while different conversations replay side by side.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from sluice import tracing
from sluice.service.spool import POLL_S, Spool, SpooledWebhook
from sluice.tracing import service as traced

log = logging.getLogger("sluice.intake")

REPLAY_BATCH = 200
REPLAY_CONCURRENCY = 32


class SpoolReplayer:
    """Replays the spool through ``replay`` (the intake's dispatch of one stored webhook),
    removing each webhook only once it is stored."""

    def __init__(self, spool: Spool, replay: Callable[[SpooledWebhook], Awaitable[None]]) -> None:
        self.spool = spool
        self._replay = replay

    async def run(self) -> None:
        """Move spooled webhooks into the queue for as long as the process runs: each
        conversation's webhooks one after another in arrival order, conversations side by
        side (up to ``REPLAY_CONCURRENCY`` at once, as the direct path would take them), and
        no batch waits for its slowest conversation. Only this process's rows (its slot's,
        and those of gone processes it takes over: :meth:`Spool.sync` every ``POLL_S``).
        A Redis error or a slow Redis waits (capped back-off) and tries the same webhook
        again, so nothing overtakes it."""
        queued: dict[str, collections.deque[SpooledWebhook]] = {}
        draining: dict[str, asyncio.Task[None]] = {}
        pending: set[int] = set()  # rows queued or in flight (a takeover re-reads from 0)
        limit = asyncio.Semaphore(REPLAY_CONCURRENCY)
        last_seq = 0
        synced = time.monotonic()
        while True:
            if time.monotonic() - synced > POLL_S:
                synced = time.monotonic()
                if await self.spool.sync():
                    last_seq = 0  # a gone process's rows are this one's now
            rows = await self.spool.after(last_seq, REPLAY_BATCH)
            if not rows:
                self.spool.clear_appended()
                rows = await self.spool.after(last_seq, REPLAY_BATCH)
                if not rows:
                    # Other processes write rows for this one and leave slots behind: look
                    # at the file again after a while even when nothing is appended here.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(POLL_S):
                            await self.spool.wait_appended()
                    continue
            for row in rows:
                last_seq = row.seq
                if row.seq in pending:
                    continue
                pending.add(row.seq)
                # A webhook of no conversation is independent of every other one.
                key = row.conversation or f"#{row.seq}"
                queued.setdefault(key, collections.deque()).append(row)
                if key not in draining:
                    draining[key] = asyncio.create_task(
                        self._drain_conversation(key, queued, draining, limit, pending)
                    )

    async def _drain_conversation(
        self,
        key: str,
        queued: dict[str, collections.deque[SpooledWebhook]],
        draining: dict[str, asyncio.Task[None]],
        limit: asyncio.Semaphore,
        pending: set[int],
    ) -> None:
        try:
            rows = queued[key]
            while rows:
                row = rows[0]
                async with limit:
                    await self._replay_until_stored(row)
                rows.popleft()
                await self.spool.remove(row)
                pending.discard(row.seq)
        finally:
            queued.pop(key, None)
            draining.pop(key, None)

    async def _replay_until_stored(self, row: SpooledWebhook) -> None:
        failures = 0
        while True:
            try:
                if tracing.enabled:  # in the trace of the webhook it was (docs/tracing.md)
                    with traced.spool_replay(row.headers.get("traceparent"), row.seq):
                        await self._replay(row)
                else:
                    await self._replay(row)
                return
            except (RedisError, TimeoutError) as exc:
                failures += 1
                delay = min(1.0, 0.05 * 2 ** min(failures, 5))
                log.info("spool replay waits for Redis (%r); again in %.2f s", exc, delay)
            except Exception:
                # A bug, not an outage: keep the webhook (never dropped), say so loudly,
                # and let the conversation wait rather than answer out of order.
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.exception("cannot replay spooled webhook #%d; again in %.0f s", row.seq, delay)
            await asyncio.sleep(delay)
