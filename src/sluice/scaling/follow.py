"""``sluice worker --processes auto``: what the option means, and the read the supervisor
makes every ``SLUICE_SCALING_POLL_S`` to follow the recommendation.

``--processes`` takes a number (a static count, as before), ``auto`` (follow the
recommendation within ``SLUICE_SCALING_MIN_WORKERS..SLUICE_SCALING_MAX_WORKERS``) or
``auto:MIN..MAX`` (follow it within MIN..MAX, e.g. one host's share of a fleet).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from sluice.queue.queue import Queue
from sluice.redis.pool import connect_from_settings
from sluice.scaling.service import STALE_AFTER_S, age_s, read_state
from sluice.scaling.settings import ScalingSettings
from sluice.settings.config import Settings

__all__ = ["AutoProcesses", "desired_reader", "parse_processes"]

log = logging.getLogger("sluice.scaling")

MAX_PROCESSES = 10_000
"""As SLUICE_SCALING_MAX_WORKERS allows; the supervisor numbers its slots below it."""

_AUTO = re.compile(r"^auto(?::(\d+)\.\.(\d+))?$")


@dataclass(frozen=True)
class AutoProcesses:
    """Follow the recommendation between ``minimum`` and ``maximum`` processes."""

    minimum: int
    maximum: int


def parse_processes(value: str, scaling: ScalingSettings) -> int | AutoProcesses:
    """A count, or the range to follow; ValueError with the accepted forms otherwise."""
    text = value.strip().lower()
    if text.isdigit():
        count = int(text)
        if count < 1:
            raise ValueError(f"--processes must be at least 1, got {count}")
        return count
    match = _AUTO.match(text)
    if match is None:
        raise ValueError(
            f"--processes {value!r}: give a number, 'auto' or 'auto:MIN..MAX' (e.g. auto:1..8)"
        )
    if not scaling.enabled:
        raise ValueError(
            "--processes auto follows the scaling recommendation: set "
            "SLUICE_SCALING_ENABLED=true (docs/scaling.md)"
        )
    low, high = match.groups()
    if low is None:
        return AutoProcesses(scaling.min_workers, scaling.max_workers)
    minimum, maximum = int(low), int(high)
    if not 1 <= minimum <= maximum <= MAX_PROCESSES:
        raise ValueError(f"--processes {value!r}: need 1 <= MIN <= MAX <= {MAX_PROCESSES}")
    return AutoProcesses(minimum, maximum)


def desired_reader(settings: Settings, url: str) -> Callable[[], int | None]:
    """A blocking read of the recommended worker count for the supervisor (None: no
    recommendation stored, or one older than :data:`STALE_AFTER_S` because no leader
    refreshes it: keep the current count). Each call opens and closes its own
    connection: the supervisor is a plain process that asks every few seconds."""

    async def read() -> int | None:
        handle = await connect_from_settings(settings, url)
        try:
            state = await read_state(Queue(settings.queue, redis=handle.client))
        finally:
            await handle.close()
        if state is None:
            return None
        age = age_s(state)
        if age > STALE_AFTER_S:
            log.warning(
                "scaling recommendation is %.0f s old (no leader refreshes it): keeping the "
                "current worker count",
                age,
            )
            return None
        return int(state["desired_workers"])

    return lambda: asyncio.run(read())
