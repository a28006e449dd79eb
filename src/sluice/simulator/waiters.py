"""Customers waiting for a reply, keyed by conversation: the simulator's own
``wait_for_reply`` and the load test's customers in another process (fed by the reply
stream) both park a future here until a reply newer than the line they wrote arrives."""

from __future__ import annotations

import asyncio
from typing import Any

Reply = dict[str, Any]
Key = tuple[int, int]  # (account id, conversation display id)


class ReplyWaiters:
    """Futures of customers waiting, each for the first reply after a message id."""

    def __init__(self) -> None:
        self._waiting: dict[Key, list[tuple[int, asyncio.Future[Reply]]]] = {}

    async def wait(self, key: Key, after_message_id: int, timeout: float) -> Reply:  # noqa: ASYNC109
        """The first reply delivered for ``key`` with an id above ``after_message_id``;
        ``TimeoutError`` after ``timeout`` seconds. Check replies already stored first:
        only replies delivered after this call wake it."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        entry = (after_message_id, future)
        self._waiting.setdefault(key, []).append(entry)
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            waiting = self._waiting.get(key)
            if waiting is not None and entry in waiting:
                waiting.remove(entry)
                if not waiting:
                    del self._waiting[key]

    def pending(self, key: Key) -> bool:
        """Whether anyone waits on ``key`` (spares building a reply nobody reads)."""
        return key in self._waiting

    def deliver(self, key: Key, message_id: int, reply: Reply) -> None:
        """Wake every customer of ``key`` waiting for a reply after an older message."""
        waiting = self._waiting.get(key)
        if not waiting:
            return
        remaining = []
        for after_id, future in waiting:
            if future.done():
                continue
            if message_id > after_id:
                future.set_result(reply)
            else:
                remaining.append((after_id, future))
        if remaining:
            self._waiting[key] = remaining
        else:
            del self._waiting[key]

    def fail_all(self, error: BaseException | None = None) -> None:
        """End every wait: with ``error``, or cancelled (the simulator is closing)."""
        for waiting in self._waiting.values():
            for _, future in waiting:
                if future.done():
                    continue
                if error is None:
                    future.cancel()
                else:
                    future.set_exception(error)
        self._waiting.clear()
