"""The monitoring leader's scaling step, and the one read every consumer shares.

Every finished minute the process holding the monitoring lease (the one that rolls the
minutes up, :mod:`sluice.alerts.service`) reads the minute roll-ups, forecasts the next 15
minutes, turns the upper band into a recommendation and stores the whole result as JSON
in ``keys.scaling_state``. Everything else reads that key: ``GET /api/admin/scaling`` (and
its KEDA form), ``/metrics``, the dashboard and ``sluice worker --processes auto``. So the
forecast is computed once per minute for the whole system, and every reader agrees.

A change of the recommended number of workers is an event on the queue's event stream
(``type`` scaling, ``key`` desired_workers, ``info`` "old -> new: reason"), so the reason of
each scale change can be found afterwards.

The seasons are refitted hourly on up to 7 days of minutes (the roll-ups' retention); each
minute only the last hour is read, for the recent-miss correction and the mean service
time. A leader that has just taken over refits at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sluice.keys import QueueKeys
from sluice.queue.queue import Queue
from sluice.scaling.forecast import (
    DAY_MIN,
    WEEK_MIN,
    Forecast,
    SeasonalModel,
    fit_model,
    recent_mean_forecast,
)
from sluice.scaling.recommend import recommend
from sluice.scaling.settings import ScalingSettings, load_scaling_settings
from sluice.settings.config import Settings

__all__ = ["HORIZON_MIN", "STALE_AFTER_S", "Scaler", "age_s", "read_state", "scaler_for"]

log = logging.getLogger("sluice.scaling")

HORIZON_MIN = 15
REFIT_EVERY_MIN = 60
SERVICE_WINDOW_MIN = 60
STATE_TTL_S = 600  # a state no leader refreshed for 10 minutes is gone, not stale-but-trusted
# The leader computes once a finished minute: a state not refreshed for three minutes means
# no leader is computing (or the roll-ups stopped). It is still shown (with its age), but
# nothing acts on it: `--processes auto` keeps its count, KEDA gets a 404 (its fallback).
STALE_AFTER_S = 180.0


@dataclass(frozen=True)
class MinuteFigures:
    """What the roll-ups say about a run of minutes (summed over partitions)."""

    arrivals: list[float]  # per minute, oldest first (0 where no roll-up exists)
    completed: int
    processing_ms: int
    first_present: int | None  # index of the first minute that has a roll-up


class Scaler:
    """Forecast and recommendation of one queue; :meth:`step` is the leader's."""

    def __init__(
        self,
        queue: Queue,
        settings: ScalingSettings,
        slots_per_process: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.slots_per_process = slots_per_process
        self.clock = clock
        self._model: SeasonalModel | None = None
        self._history_minutes = 0
        self._next_fit = 0  # the minute from which the full history is read again
        self._read_once = False
        self._last_minute: int | None = None

    async def step(self) -> dict[str, Any] | None:
        """Recompute once per finished minute (idempotent within a minute); returns the new
        state, or None when nothing was due."""
        if not self.settings.enabled:
            return None
        parts = [engine.keys for engine in await self.queue.current_engines()]
        last = await _last_rolled_minute(self.queue, parts)
        if last is None or last == self._last_minute:
            return None
        recent = await _read_minutes(self.queue, parts, last - SERVICE_WINDOW_MIN + 1, last)
        forecast = await self._forecast(parts, last, recent)
        state = await self._state(forecast, recent, last)
        await self._publish(state)
        self._last_minute = last
        return state

    async def _forecast(
        self, parts: Sequence[QueueKeys], last: int, recent: MinuteFigures
    ) -> Forecast:
        band = self.settings.band
        if self._model is not None and last < self._next_fit:
            return self._model.forecast(recent.arrivals, last, HORIZON_MIN)
        # A fresh install (under a day of history) has no seasons to fit: it re-reads every
        # minute, but only as far back as its history reached, plus a margin.
        short = self._read_once and self._history_minutes < DAY_MIN
        span = min(WEEK_MIN, self._history_minutes + 120) if short else WEEK_MIN
        full = await _read_minutes(self.queue, parts, last - span + 1, last)
        start = full.first_present
        history = full.arrivals[start:] if start is not None else []
        self._read_once = True
        self._history_minutes = len(history)
        if len(history) < DAY_MIN:
            self._model = None
            return recent_mean_forecast(history, last, horizon=HORIZON_MIN, band=band)
        self._model = fit_model(history, last, band=band)
        self._next_fit = last + REFIT_EVERY_MIN
        return self._model.forecast(history, last, HORIZON_MIN)

    async def _state(self, forecast: Forecast, recent: MinuteFigures, last: int) -> dict[str, Any]:
        s = self.settings
        if recent.completed:
            service_s = recent.processing_ms / recent.completed / 1000
            service_source = (
                f"measured: {recent.completed} messages of the last {SERVICE_WINDOW_MIN} min"
            )
        else:
            service_s = s.default_service_time_ms / 1000
            service_source = (
                f"no message finished in the last {SERVICE_WINDOW_MIN} min: "
                "SLUICE_SCALING_DEFAULT_SERVICE_TIME_MS"
            )
        live = await self.queue.live_settings()
        slots = live["concurrency"] or self.slots_per_process
        counts = await self.queue.counts()
        waiting = int(counts["waiting"])
        upper_per_min = forecast.peak_upper_within(s.lookahead_minutes)
        backlog_per_s = waiting / s.drain_s if s.drain_s > 0 else 0.0
        rec = recommend(
            upper_per_min / 60 + backlog_per_s,
            service_s,
            slots,
            s.target_utilization,
            s.min_workers,
            s.max_workers,
        )
        basis = f"upper band {upper_per_min:.1f}/min over the next {s.lookahead_minutes} min"
        if backlog_per_s:
            basis += f" + {waiting} waiting to drain in {s.drain_s:g} s"
        return {
            "enabled": True,
            "computed_at": self.clock(),
            "last_minute": last,
            "desired_workers": rec.desired,
            "reason": f"{basis} ({forecast.model} model): {rec.reason}",
            "recommendation": rec.to_dict(),
            "inputs": {
                "service_time_s": service_s,
                "service_time_source": service_source,
                "slots_per_process": slots,
                "waiting": waiting,
                "lookahead_minutes": s.lookahead_minutes,
                "drain_s": s.drain_s,
                "upper_arrivals_per_min": upper_per_min,
            },
            "forecast": forecast.to_dict(),
        }

    async def _publish(self, state: dict[str, Any]) -> None:
        """Store the state; on a change of the desired workers, an event with the reason."""
        keys = self.queue.keys
        previous = await read_state(self.queue)
        before = previous.get("desired_workers") if previous else None
        state["previous_desired_workers"] = before
        pipe = self.queue.redis.pipeline(transaction=True)
        pipe.set(keys.scaling_state, json.dumps(state), ex=STATE_TTL_S)
        if before != state["desired_workers"]:
            info = f"{'-' if before is None else before} -> {state['desired_workers']}: "
            pipe.xadd(
                keys.events,
                {
                    "type": "scaling",
                    "job": "",
                    "key": "desired_workers",
                    "info": info + state["reason"],
                },
                maxlen=10_000,
                approximate=True,
            )
        await pipe.execute()
        if before != state["desired_workers"]:
            log.info(
                "desired workers %s -> %s: %s", before, state["desired_workers"], state["reason"]
            )


def scaler_for(queue: Queue, settings: Settings) -> Scaler | None:
    """The scaler a monitoring service runs, or None with scaling off (the default).
    ``SLUICE_SCALING_*`` is read here: a bad value stops the process at startup."""
    scaling = load_scaling_settings()
    if not scaling.enabled:
        return None
    return Scaler(queue, scaling, settings.worker_concurrency)


def age_s(state: dict[str, Any], now: float | None = None) -> float:
    """How old a stored state is, in seconds (its leader's clock against this one's)."""
    try:
        computed = float(state["computed_at"])
    except (KeyError, TypeError, ValueError):
        return float("inf")
    return max(0.0, (time.time() if now is None else now) - computed)


async def read_state(queue: Queue) -> dict[str, Any] | None:
    """The last state the leader stored (None: scaling off, or no leader computed one in
    the last 10 minutes)."""
    raw = await queue.redis.get(queue.keys.scaling_state)
    if raw is None:
        return None
    try:
        state: dict[str, Any] = json.loads(raw)
    except ValueError:
        return None
    return state


async def _last_rolled_minute(queue: Queue, parts: Sequence[QueueKeys]) -> int | None:
    """The newest minute every partition has rolled up (None before the first roll-up)."""
    values = [await queue.redis.get(keys.mon_rolled_until) for keys in parts]
    if any(v is None for v in values):
        return None
    return min(int(v) for v in values if v is not None)


async def _read_minutes(
    queue: Queue, parts: Sequence[QueueKeys], first: int, last: int
) -> MinuteFigures:
    """Arrivals, completions and processing time of minutes ``first..last`` from the
    roll-ups, summed over ``parts``: one pipelined HMGET per minute and partition."""
    minutes = list(range(first, last + 1))
    pipe = queue.redis.pipeline(transaction=False)
    for keys in parts:
        for minute in minutes:
            pipe.hmget(keys.mon_1m(minute), ["_rolled", "enq", "n", "ps"])
    raw = await pipe.execute() if minutes else []
    arrivals = [0.0] * len(minutes)
    present = [False] * len(minutes)
    completed = processing = 0
    for index, row in enumerate(raw):
        i = index % len(minutes)
        rolled, enq, done, ps = row
        present[i] = present[i] or rolled is not None
        arrivals[i] += int(enq or 0)
        completed += int(done or 0)
        processing += int(ps or 0)
    first_present = next((i for i, p in enumerate(present) if p), None)
    return MinuteFigures(arrivals, completed, processing, first_present)
