"""What the API process holds while it runs, reachable from any route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from sluice.monitor.snapshot import Monitor
from sluice.queue.queue import Queue
from sluice.redis.pool import RedisHandle
from sluice.service.intake import Intake
from sluice.service.spool import SpoolStats
from sluice.settings.config import Settings

AlertsFn = Callable[[], Awaitable[list[dict[str, Any]]]]


async def _none() -> list[dict[str, Any]]:
    return []


@dataclass
class AppState:
    settings: Settings
    redis: RedisHandle
    queue: Queue
    monitor: Monitor
    alerts: AlertsFn = _none
    alert_history: AlertsFn = _none
    request_ack: Callable[[str, str], Awaitable[None]] = field(default=lambda fp, by: _noop())
    request_silence: Callable[[str, float, str], Awaitable[float]] = field(
        default=lambda fp, seconds, by: _zero()
    )
    rules: list[dict[str, Any]] = field(default_factory=list)
    intake: Intake | None = None

    def spool_stats(self) -> SpoolStats | None:
        """This host's intake spool, when the intake has one."""
        spool = self.intake.spool if self.intake is not None else None
        return spool.stats() if spool is not None else None


async def _noop() -> None:
    return None


async def _zero() -> float:
    return 0.0


def app_state(app: FastAPI) -> AppState:
    state: AppState = app.state.sluice
    return state
