"""Jepsen-style runs of the whole system under a seeded nemesis (see the package docstring).

- ``test_short_jepsen_run``: the fast suite's share, about 20 s of faults for each of three
  fixed seeds (a minute in all), so every ``make test`` throws every kind of fault at Sluice;
- ``test_long_jepsen_run``: ``make test-jepsen``, ``SLUICE_JEPSEN_S`` seconds (default
  1800) of faults with a fresh seed (``SLUICE_JEPSEN_SEED`` replays one), at least 500 fault
  events for the default length.

Each prints its seed first (``nemesis seed=…``: rerun a failure with it), then one figures
line per run and the violations found.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import pytest

from .nemesis import EVEN
from .scenario import RunConfig, RunOutcome, run_jepsen

# (seed, turn length in ms): long turns are more often caught mid-way by a fault; short
# ones (well under the 125 ms a worker's prefetch pays off for) keep prefetch buffers busy.
SHORT_RUNS = ((1234, 200.0), (5678, 50.0), (9012, 50.0))
SHORT_S = 20.0
# One of each kind per deck and short gaps: each 20 s run deals most of the seven kinds,
# the three seeds all of them.
SHORT_GAP_S = (0.5, 1.5)
LONG_S = float(os.environ.get("SLUICE_JEPSEN_S", "1800"))
LONG_MIN_EVENTS_PER_HALF_HOUR = 500
# Shorter quiet gaps in the long run: 30 minutes must hold more than 500 events (the
# events themselves average about 2.5 s).
LONG_GAP_S = (0.1, 0.5)
LONG_TURN_MS = 80.0  # short enough for prefetch, long enough to be caught mid-turn
SETTLE_ALLOWANCE_S = 300  # startup, settling and checking, on top of the nemesis time


def _print(outcome: RunOutcome, config: RunConfig) -> None:
    print("\n" + outcome.report(config), flush=True)


def _assert_meaningful(outcome: RunOutcome) -> None:
    """The run itself held up: nothing died unless the nemesis killed it, and the queue
    emptied before the replies were read (a turn still running could post after)."""
    assert not outcome.restarted, f"died on their own: {outcome.restarted}"
    assert outcome.quiet, "the queue did not empty after the run"


@pytest.mark.timeout(SHORT_S + SETTLE_ALLOWANCE_S)
@pytest.mark.parametrize(("seed", "turn_ms"), SHORT_RUNS)
async def test_short_jepsen_run(seed: int, turn_ms: float, tmp_path: Path) -> None:
    """About 20 s of every kind of fault, then the promise is checked over the history."""
    config = RunConfig(
        seed=seed,
        duration_s=SHORT_S,
        gap_s=SHORT_GAP_S,
        weights=EVEN,
        broker_latency_ms=turn_ms,
    )
    outcome = await run_jepsen(tmp_path, config)
    _print(outcome, config)
    result = outcome.result
    assert sum(result.faults.values()) > 0, "the nemesis should have done something"
    assert result.accepted > 0 and result.events_recorded > 0
    _assert_meaningful(outcome)
    assert result.ok, outcome.report(config)


@pytest.mark.slow
@pytest.mark.jepsen
@pytest.mark.timeout(LONG_S + 2 * SETTLE_ALLOWANCE_S)
async def test_long_jepsen_run(tmp_path: Path) -> None:
    """``SLUICE_JEPSEN_S`` of faults (at least 500 events per 30 minutes)."""
    seed = int(os.environ.get("SLUICE_JEPSEN_SEED") or random.SystemRandom().randrange(10**6))
    config = RunConfig(
        seed=seed, duration_s=LONG_S, gap_s=LONG_GAP_S, broker_latency_ms=LONG_TURN_MS
    )
    outcome = await run_jepsen(tmp_path, config)
    _print(outcome, config)
    result = outcome.result
    events = sum(result.faults.values())
    wanted = math.ceil(LONG_MIN_EVENTS_PER_HALF_HOUR * LONG_S / 1800)
    print(
        f"jepsen summary: seed={seed} duration={LONG_S:.0f}s fault_events={events} "
        f"(wanted >= {wanted}) accepted={result.accepted} violations={len(result.violations)}"
        f" {dict(result.violation_kinds())}"
    )
    assert events >= wanted, f"only {events} fault events; shorten the gaps"
    _assert_meaningful(outcome)
    assert result.ok, outcome.report(config)
