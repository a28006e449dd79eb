"""Alerting for one process: a leader-elected evaluator plus the reads and operator
requests the API serves. Every Sluice process (API and workers) runs one; the lease makes
exactly one of them evaluate, roll up monitoring minutes, forecast the scaling
recommendation (when a :class:`~sluice.scaling.service.Scaler` is given) and notify.

The one place that wires settings, rules, engine, store, channels and evaluator together,
so the API and the CLI start alerting with one object instead of repeating the wiring.
(:class:`MonitoringService` keeps the name the API and the CLI know it by.)"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from sluice.alerts.channels import Dispatcher, channels_from_settings
from sluice.alerts.config import AlertSettings, load_alert_settings
from sluice.alerts.engine import AlertEngine
from sluice.alerts.evaluator import AlertEvaluator
from sluice.alerts.rules import default_rules
from sluice.alerts.store import AlertStore
from sluice.monitor.signals import Signals
from sluice.monitor.snapshot import Monitor
from sluice.monitor.windows import record_depth, server_time
from sluice.scaling.service import Scaler

log = logging.getLogger("sluice.alerts")


class MonitoringService:
    """The alert leader's loop. ``local_signals`` adds readings only this process has (its
    host's intake spool) to the ones every process reads from Redis."""

    def __init__(
        self,
        monitor: Monitor,
        settings: AlertSettings | None = None,
        local_signals: Callable[[], Mapping[str, float | None]] | None = None,
        scaler: Scaler | None = None,
    ) -> None:
        self.monitor = monitor
        self.scaler = scaler
        self.local_signals = local_signals
        self.queue = monitor.queue
        self.settings = settings or load_alert_settings()
        self.rules = default_rules(self.settings)
        self.store = AlertStore(self.queue.redis, self.queue.keys)
        self.dispatcher = Dispatcher.from_settings(self.settings)
        self.evaluator = AlertEvaluator(
            self.queue.redis,
            self.queue.keys,
            AlertEngine(self.rules, self.settings, self.queue.name),
            self.store,
            self.dispatcher,
            None,
            self._signals,
            self.settings.evaluation_interval_s,
        )
        self._task: asyncio.Task[None] | None = None

    async def _signals(self) -> Signals:
        # Only the leader gets here: it also folds finished minutes into day buckets.
        await self.monitor.reader.rollup()
        if self.scaler is not None:
            # The leader also forecasts each finished minute (sluice.scaling.service); a
            # failure there must not cost the alerts their evaluation.
            try:
                await self.scaler.step()
            except Exception:
                log.exception("scaling step failed on queue %s", self.queue.name)
        counts = await self.queue.counts()
        now = await server_time(self.queue.redis)
        await record_depth(self.queue.redis, self.queue.keys, counts, now)
        signals = self.monitor.signals_from(await self.monitor.windows(), counts)
        if self.local_signals is not None:
            signals.update(self.local_signals())
        return signals

    def start(self) -> None:
        self._task = asyncio.create_task(self.evaluator.run(), name="alert evaluator")

    async def stop(self) -> None:
        await self.evaluator.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.dispatcher.close()

    def rule_table(self) -> list[dict[str, Any]]:
        """The rules and their thresholds, as operators see them on the dashboard."""
        return [
            {
                "name": r.name,
                "summary": r.summary,
                "direction": r.direction,
                "warning": r.warning,
                "critical": r.critical,
                "unit": r.unit,
                "for_s": r.for_s,
            }
            for r in self.rules
        ]

    async def _engine(self) -> AlertEngine:
        engine = AlertEngine(self.rules, self.settings, self.queue.name)
        saved = await self.store.load()
        if saved:
            engine.restore(saved)
        return engine

    async def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts as the leader last saved them."""
        return [a.to_dict() for a in (await self._engine()).active()]

    async def history(self, limit: int = 100) -> list[dict[str, Any]]:
        return [h.to_dict() for h in await self.store.history(limit)]

    async def request_ack(self, fingerprint: str, by: str) -> None:
        await self.store.request_ack(fingerprint, by)

    async def request_silence(self, target: str, seconds: float, by: str) -> float:
        until = time.time() + seconds
        await self.store.request_silence(target, until, by)
        return until


async def check_channels(settings: AlertSettings | None = None) -> list[tuple[str, str | None]]:
    """(channel name, problem or None) for every configured alert channel (dry run)."""
    found = []
    for channel in channels_from_settings(settings or load_alert_settings()):
        found.append((channel.name, await channel.check()))
    return found
