"""The forecaster, the recommendation and the settings of predictive scaling, on generated
minute series (pure functions: no Redis, no clock)."""

from __future__ import annotations

import math
import random

import pytest

from sluice.errors import ConfigError
from sluice.scaling.follow import AutoProcesses, parse_processes
from sluice.scaling.forecast import DAY_MIN, fit_forecast, fit_model
from sluice.scaling.recommend import recommend
from sluice.scaling.settings import load_scaling_settings

MONDAY = 29_449_440  # 2025-12-29T00:00Z, a Monday, in minutes
WEEKLY = (1.0, 1.0, 1.0, 1.0, 1.0, 0.4, 0.3)  # Monday .. Sunday


def rate(minute: int) -> float:
    """A weekday curve peaking at 15:00 UTC (60/min), weekends lower."""
    hour = (minute % DAY_MIN) / 60
    day = (minute // DAY_MIN + 3) % 7
    return (5 + 55 * math.exp(-0.5 * ((hour - 15) / 3) ** 2)) * WEEKLY[day]


def series(first: int, minutes: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [max(0.0, rng.gauss(rate(m), math.sqrt(rate(m)))) for m in range(first, first + minutes)]


def test_seasonal_forecast_follows_the_daily_curve_and_the_weekday() -> None:
    # A week of history ending Friday 13:59: the next 15 minutes climb towards the peak.
    last = MONDAY + 4 * DAY_MIN + 14 * 60 - 1
    history = series(last - 7 * DAY_MIN + 1, 7 * DAY_MIN)
    forecast = fit_forecast(history, last)
    assert forecast.model == "seasonal" and forecast.notes == ()
    assert [p.minute for p in forecast.points] == list(range(last + 1, last + 16))
    for point in forecast.points:
        truth = rate(point.minute)
        assert abs(point.expected - truth) < 0.15 * truth, (point, truth)
        assert point.upper > point.expected
    # Saturday at the same time is forecast much lower: the weekday factor, from one week.
    saturday = fit_model(history, last).fitted(last + 1 + DAY_MIN)
    assert saturday < 0.6 * forecast.points[0].expected


def test_a_fresh_install_forecasts_the_recent_mean_and_says_why() -> None:
    history = [10.0] * 90
    forecast = fit_forecast(history, MONDAY + 89)
    assert forecast.model == "recent-mean" and forecast.history_minutes == 90
    assert "a day is needed" in forecast.notes[0]
    assert all(p.expected == 10 and p.upper > 10 for p in forecast.points)


def test_an_unforeseen_burst_raises_the_next_minutes_at_once() -> None:
    last = MONDAY + 2 * DAY_MIN + 11 * 60
    history = series(last - 2 * DAY_MIN + 1, 2 * DAY_MIN)
    calm = fit_forecast(history, last).points[0].expected
    history[-2:] = [history[-2] * 2, history[-1] * 3]  # the last two minutes burst
    burst = fit_forecast(history, last).points[0].expected
    assert burst > 2 * calm
    # ... and fades over the horizon instead of staying forever.
    points = fit_forecast(history, last).points
    assert points[-1].expected < points[0].expected


def test_recommendation_is_the_issue_formula_bounded() -> None:
    # 10 arrivals/s × 3 s = 30 busy slots; / (10 slots × 0.7) = 4.29 -> 5.
    rec = recommend(10, 3.0, 10, 0.7, 1, 20)
    assert rec.desired == rec.unbounded == 5
    assert "= 5" in rec.reason
    assert recommend(100, 3.0, 10, 0.7, 1, 20).desired == 20
    assert "capped at the maximum 20" in recommend(100, 3.0, 10, 0.7, 1, 20).reason
    assert recommend(0, 3.0, 10, 0.7, 2, 20).desired == 2
    assert recommend(7, 1.0, 10, 0.7, 1, 9).desired == 1  # exactly 1.0, not 2
    with pytest.raises(ValueError, match="utilization"):
        recommend(1, 1, 10, 0, 1, 2)


def test_settings_are_off_by_default_and_refuse_inverted_bounds() -> None:
    assert load_scaling_settings({}).enabled is False
    with pytest.raises(ConfigError, match="SLUICE_SCALING_MIN_WORKERS"):
        load_scaling_settings(
            {"SLUICE_SCALING_MIN_WORKERS": "5", "SLUICE_SCALING_MAX_WORKERS": "2"}
        )
    with pytest.raises(ConfigError, match="SLUICE_SCALING_BAND"):
        load_scaling_settings({"SLUICE_SCALING_BAND": "1.5"})


def test_processes_option_forms() -> None:
    on = load_scaling_settings(
        {"SLUICE_SCALING_ENABLED": "true", "SLUICE_SCALING_MAX_WORKERS": "6"}
    )
    assert parse_processes("3", on) == 3
    assert parse_processes("auto", on) == AutoProcesses(1, 6)
    assert parse_processes("auto:2..4", on) == AutoProcesses(2, 4)
    for bad in ("0", "auto:4..2", "many", "auto:1-3"):
        with pytest.raises(ValueError):
            parse_processes(bad, on)
    with pytest.raises(ValueError, match="SLUICE_SCALING_ENABLED"):
        parse_processes("auto", load_scaling_settings({}))
