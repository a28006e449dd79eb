"""Group commit for enqueues: messages handed over while a call is on the wire go in one.

:meth:`Queue.add <sluice.queue.queue.Queue.add>` awaits its message's script call, as
before: a producer (the intake answering a webhook 200) returns only once Redis has the
message. What changes is how the calls are shaped. A message sent while fewer than
:data:`IN_FLIGHT` enqueue calls of its queue are on the wire goes at once, alone
(``enqueue.lua``); one that arrives while they are all busy waits for the first to come
back and goes with every other message that arrived meanwhile, in one call of
``enqueue_batch.lua`` (at most :data:`BATCH_MAX` each), in the order they arrived. One
message at a time (benchmark D, a quiet intake) therefore pays nothing extra; under
concurrent producers a call's fixed cost (the round trip, reading the request, the script
call, the clock, the wake-up and the monitoring counters) is shared by its messages, which
was most of what an enqueue cost the Redis server (docs/benchmarks.md).

Each message keeps its own request id and message id, so a batch that redis-py re-sends
acts once per message as a single call would (lib/enqueue_one.lua). A producer cancelled
while its message still waits (the intake's store deadline) is left out of the next call;
one cancelled after its call left is as a cancelled single call: the message may be in
Redis (its dedupe record answers a re-send).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.commands.core import AsyncScript

__all__ = ["BATCH_MAX", "IN_FLIGHT", "EnqueueCoalescer"]

IN_FLIGHT = 2
"""Enqueue calls of one queue on the wire at once before messages start to wait and group."""

BATCH_MAX = 64
"""Messages per grouped call: bounds the time one script call holds the server."""

_Waiter = tuple[list[Any], "asyncio.Future[tuple[Any, Any]]"]


class EnqueueCoalescer:
    """Sends one queue's enqueue calls, grouping those that arrive while it is busy."""

    def __init__(
        self, single: AsyncScript, batch: AsyncScript, keys: Sequence[str], prefix: str
    ) -> None:
        self._single = single
        self._batch = batch
        self._keys = keys
        self._prefix = prefix
        self._busy = 0
        self._waiting: list[_Waiter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def enqueue(self, args: list[Any]) -> Any:
        """Run ``args`` (enqueue.lua's arguments) alone or in a group; its ``(job id,
        status)`` answer."""
        if self._busy < IN_FLIGHT and not self._waiting:
            self._busy += 1
            try:
                return await self._single(self._keys, args)
            finally:
                self._busy -= 1
                self._next()
        future: asyncio.Future[tuple[Any, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append((args, future))
        self._next()
        return await future

    def _next(self) -> None:
        """Send what waits, if a call may leave now."""
        while self._waiting and self._busy < IN_FLIGHT:
            group = [w for w in self._waiting[:BATCH_MAX] if not w[1].done()]
            del self._waiting[:BATCH_MAX]
            if not group:
                continue
            self._busy += 1
            task = asyncio.ensure_future(self._send(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, group: list[_Waiter]) -> None:
        try:
            if len(group) == 1:
                answers = [await self._single(self._keys, group[0][0])]
            else:
                flat: list[Any] = [self._prefix, len(group)]
                for args, _ in group:
                    flat.extend(args[1:])
                    if len(args) == 10 + 2 * _hop_count(args[9]):
                        flat.append("")  # no trace context: the batch always has the slot
                raw = await self._batch(self._keys, flat)
                answers = [(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]
        except BaseException as exc:  # every producer of the group gets the error
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), answer in zip(group, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
        finally:
            self._busy -= 1
            self._next()


def _hop_count(spec: Any) -> int:
    """The hop count of enqueue.lua's ARGV 10 (``n``, or ``n|epoch|c`` with the guard)."""
    return int(str(spec).split("|", 1)[0])
