"""Busy slot-seconds over capacity: how much of a worker's concurrency is really used."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sample:
    """One sampling interval: utilization 0..1, completions per second, and the busy and
    available slot-seconds behind the ratio (summed across workers for the overall one)."""

    utilization: float
    throughput: float
    busy_s: float
    capacity_s: float


class UtilizationMeter:
    """Accumulates busy time of slots and reports utilization per sampling interval.

    Utilization counts time, not jobs: ten 50 ms jobs in a 10-slot worker over one second
    is 5 %, which is what capacity planning needs (Little's law), unlike "slots busy now".
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._running: dict[Hashable, float] = {}  # a run's key -> its start
        self._busy = 0.0
        self._last_sample = clock()
        self._completed_since = 0

    def started(self, run: Hashable) -> None:
        self._running[run] = self._clock()

    def finished(self, run: Hashable) -> None:
        began = self._running.pop(run, None)
        if began is not None:
            self._busy += self._clock() - max(began, self._last_sample)
            self._completed_since += 1

    def sample(self, slots: int) -> Sample:
        """Utilization and throughput since the previous sample."""
        now = self._clock()
        elapsed = now - self._last_sample
        busy = self._busy
        for job_id, began in self._running.items():
            busy += now - max(began, self._last_sample)
            self._running[job_id] = max(began, self._last_sample)
        throughput = self._completed_since / elapsed if elapsed > 0 else 0.0
        self._busy = 0.0
        self._completed_since = 0
        self._last_sample = now
        capacity = max(0.0, slots * elapsed)
        utilization = min(1.0, busy / capacity) if capacity > 0 else 0.0
        return Sample(utilization, throughput, busy, capacity)
