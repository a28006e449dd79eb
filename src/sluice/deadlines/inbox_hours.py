"""Inboxes' working hours for SLA deadlines, fetched from Chatwoot and kept a while.

A business-hours SLA policy needs the inbox's hours, which no webhook carries (newer
Chatwoot versions send the due times themselves, ``sla_*_due_at``, and need none of this).
The intake must answer a webhook within Chatwoot's 5 s and must not wait on an API call
for it, so :meth:`InboxHours.get` answers from the cache at once: a miss (or an entry
older than ``ttl_s``) starts one background fetch and answers what it has (None on a miss:
the deadline counts plain time, which is earlier, :mod:`sluice.deadlines.decide`). A failed
fetch is retried after ``retry_s``, not on every message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sluice.deadlines.business_hours import WorkingHours

log = logging.getLogger("sluice.deadlines")

Fetch = Callable[[int, int], Awaitable[Mapping[str, Any] | None]]


@dataclass
class _Entry:
    hours: WorkingHours | None
    fetched_at: float


class InboxHours:
    """``fetch(account_id, inbox_id)`` is the inbox's JSON (ChatwootClient.inbox)."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl_s: float = 600.0,
        retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.ttl_s = ttl_s
        self.retry_s = retry_s
        self._clock = clock
        self._entries: dict[tuple[int, int], _Entry] = {}
        self._pending: dict[tuple[int, int], asyncio.Task[None]] = {}

    def get(self, account_id: int, inbox_id: int) -> WorkingHours | None:
        """The hours known now (None: not yet); refreshes in the background when due."""
        key = (account_id, inbox_id)
        entry = self._entries.get(key)
        age = None if entry is None else self._clock() - entry.fetched_at
        wait = self.ttl_s if entry is not None and entry.hours is not None else self.retry_s
        if (age is None or age >= wait) and key not in self._pending:
            self._pending[key] = asyncio.get_running_loop().create_task(self._refresh(key))
        return entry.hours if entry is not None else None

    async def _refresh(self, key: tuple[int, int]) -> None:
        try:
            inbox = await self._fetch(*key)
            hours = WorkingHours.from_inbox(inbox) if inbox is not None else None
        except Exception as exc:  # any failure: plain time, retried later
            log.warning("working hours of inbox %s unavailable: %s", key[1], exc)
            old = self._entries.get(key)
            hours = old.hours if old is not None else None
        finally:
            self._pending.pop(key, None)
        self._entries[key] = _Entry(hours, self._clock())

    async def settled(self) -> None:
        """Wait for the fetches under way (tests; a caller that can afford to wait)."""
        await asyncio.gather(*list(self._pending.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()
        await asyncio.gather(*self._pending.values(), return_exceptions=True)
