"""Forecast the next minutes' arrivals from the minute roll-ups: a seasonal model with a
daily profile, a day-of-week factor and a linear trend, in pure Python.

Why not statsmodels (docs/scaling.md, "Why no statsmodels", has the measurements): it
brings numpy, scipy and pandas (about 75 MB of wheels, about 390 MB installed) into a
service that has none of them, and its seasonal models cannot use what Sluice keeps
anyway: the roll-ups are kept 7 days, exactly one weekly period, while MSTL and
Holt-Winters need at least two periods of each seasonality to estimate it. With one week
the weekly seasonality can only be "how this day of the week compared to the others", which
is what the day-of-week factor below is, fitted in milliseconds by backfitting.

The model (multiplicative, because traffic at night on a Sunday is a fraction of traffic at
night on a Monday, not a fixed number of messages fewer)::

    arrivals(t) ≈ trend(t) × daily[t's 15-minute slot of the day] × weekly[t's weekday]
                  + recent(t)

* ``trend`` is a straight line ``a + b·t`` through the deseasonalised history;
* ``daily`` (96 slots, mean 1, interpolated between slot centres) and ``weekly`` (7
  days, mean 1) are median-ratio estimates (robust to bursts, :func:`_factors`), refined
  in turn with the trend (backfitting) for a few rounds;
* the whole is scaled by the last hour's **level ratio** (actual / fitted,
  :func:`_level_ratio`): one week cannot tell a trend from weekday factors, the last hour
  can tell how today runs against them;
* ``recent`` is what the seasons missed in the last minutes (:func:`_recent_error`),
  carried into the forecast with a decay: a burst they did not foresee raises the next
  minutes at once;
* the **upper band** is the forecast plus the normal ``band`` quantile times a robust
  sigma (median absolute deviation) of the standardised residuals (residual /
  sqrt(fitted), as counts vary like a Poisson's): as wide as the model's real misses on
  ordinary minutes (:func:`robust_spread` says why bursts are left out of it).

With less than a day of history there is no daily profile to fit: the forecast is then the
recent mean with the same residual band, and :attr:`Forecast.model` says so. The weekly
factor needs the forecast's weekday in the history (a full week); until then it is 1.
All times are UTC minutes (unix seconds // 60).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist

__all__ = [
    "DAY_MIN",
    "WEEK_MIN",
    "Forecast",
    "ForecastPoint",
    "SeasonalModel",
    "fit_forecast",
    "fit_model",
    "recent_mean_forecast",
]

DAY_MIN = 1440
WEEK_MIN = 10080
SLOT_MIN = 15  # width of one daily-profile slot: 7 days × 15 minutes = 105 points per slot
SLOTS = DAY_MIN // SLOT_MIN
ROUNDS = 4  # backfitting rounds; the estimates stop moving after two or three
RECENT_HALFLIFE_MIN = 1.0  # how fast the recent-error correction forgets
RECENT_DECAY = 0.9  # per forecast minute: a burst's correction fades over ~15 minutes
RAMP_MIN = 2  # a burst's last one-minute growth goes on this many minutes, then levels off
RECENT_WINDOW_MIN = 30
LEVEL_WINDOW_MIN = 60  # the level ratio's window: an hour of minutes
LEVEL_RATIO_MAX = 4.0  # the level ratio stays within [1/4, 4]
FALLBACK_WINDOW_MIN = 30  # the recent mean of a fresh install


@dataclass(frozen=True)
class ForecastPoint:
    """One forecast minute: arrivals in that minute, expected and the upper band."""

    minute: int  # unix seconds // 60
    expected: float
    upper: float

    def to_dict(self) -> dict[str, float | int]:
        return {"minute": self.minute, "expected": self.expected, "upper": self.upper}


@dataclass(frozen=True)
class Forecast:
    """The next minutes' arrivals and how they were forecast."""

    points: tuple[ForecastPoint, ...]
    model: str  # "seasonal" or "recent-mean" (too little history)
    history_minutes: int
    band: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    trend_per_day: float = 0.0  # arrivals per minute gained per day (the fitted slope)

    @property
    def peak_upper(self) -> float:
        return max((p.upper for p in self.points), default=0.0)

    def peak_upper_within(self, minutes: int) -> float:
        """The largest upper band over the first ``minutes`` forecast minutes."""
        return max((p.upper for p in self.points[: max(1, minutes)]), default=0.0)

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "history_minutes": self.history_minutes,
            "band": self.band,
            "trend_per_day": self.trend_per_day,
            "notes": list(self.notes),
            "points": [p.to_dict() for p in self.points],
        }


def _slot(minute: int) -> int:
    return (minute % DAY_MIN) // SLOT_MIN


def _daily_at(daily: Sequence[float], minute: int) -> float:
    """The daily profile at ``minute``, interpolated between the slots' centres: a ramp
    (the morning's) then rises minute by minute instead of in 15-minute steps."""
    position = (minute % DAY_MIN) / SLOT_MIN - 0.5  # in slots, 0 = the first slot's centre
    low = math.floor(position)
    weight = position - low
    return daily[low % SLOTS] * (1 - weight) + daily[(low + 1) % SLOTS] * weight


def _weekday(minute: int) -> int:
    return (minute // DAY_MIN + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    position = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[position]


def _line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares a + b·x."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return mean_y, 0.0
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    return mean_y - b * mean_x, b


@dataclass(frozen=True)
class SeasonalModel:
    """The fitted seasons, trend and residual spread: expensive to fit (the whole history),
    cheap to forecast from, so a caller refits it now and then (hourly) and forecasts
    every minute with the newest minutes (:meth:`forecast`)."""

    fitted_until: int  # the last minute of the history it was fitted on
    history_minutes: int
    a: float  # trend: a + b × (minute − fitted_until), deseasonalised arrivals per minute
    b: float
    daily: tuple[float, ...]
    weekly: tuple[float, ...]
    seen_days: frozenset[int]
    spread: float  # the band quantile of residual / sqrt(fitted)
    band: float

    def fitted(self, minute: int) -> float:
        weekday = _weekday(minute)
        factor = self.weekly[weekday] if weekday in self.seen_days else 1.0
        level = self.a + self.b * (minute - self.fitted_until)
        return max(0.0, level * _daily_at(self.daily, minute) * factor)

    def notes(self) -> tuple[str, ...]:
        if len(self.seen_days) < 7:
            return (f"weekly factor needs a full week of history; {len(self.seen_days)} days seen",)
        return ()

    def forecast(self, recent: Sequence[float], last_minute: int, horizon: int = 15) -> Forecast:
        """The next ``horizon`` minutes after ``last_minute``; ``recent`` are the arrivals of
        the minutes up to ``last_minute`` (oldest first; the last hour is used)."""
        window = list(recent[-LEVEL_WINDOW_MIN:])
        first = last_minute - len(window) + 1
        ratio = _level_ratio(window, [self.fitted(first + i) for i in range(len(window))])
        tail = window[-RECENT_WINDOW_MIN:]
        first = last_minute - len(tail) + 1
        residuals = [y - self.fitted(first + i) * ratio for i, y in enumerate(tail)]
        noise = self.spread * math.sqrt(max(self.fitted(last_minute) * ratio, 1.0))
        correction, growth = _recent_error(residuals, noise)
        points = []
        for h in range(1, horizon + 1):
            minute = last_minute + h
            base = self.fitted(minute) * ratio
            missed = correction + growth * min(h, RAMP_MIN)
            expected = max(0.0, base + missed * RECENT_DECAY**h)
            upper = expected + max(0.0, self.spread) * math.sqrt(max(expected, 1.0))
            points.append(ForecastPoint(minute, expected, upper))
        return Forecast(
            points=tuple(points),
            model="seasonal",
            history_minutes=min(
                WEEK_MIN, self.history_minutes + max(0, last_minute - self.fitted_until)
            ),
            band=self.band,
            notes=self.notes(),
            trend_per_day=self.b * DAY_MIN,
        )


def fit_model(history: Sequence[float], last_minute: int, *, band: float = 0.95) -> SeasonalModel:
    """Fit the seasons and the trend on ``history``, the arrivals of each minute up to and
    including ``last_minute`` (oldest first; a minute without a roll-up counts as 0). Needs
    a day of history (:data:`DAY_MIN` minutes)."""
    _check_band(band)
    n = len(history)
    if n < DAY_MIN:
        raise ValueError(f"the seasonal model needs {DAY_MIN} minutes of history, got {n}")
    first_minute = last_minute - n + 1
    minutes = range(first_minute, last_minute + 1)
    slots = [_slot(m) for m in minutes]
    days = [_weekday(m) for m in minutes]
    xs = [float(m - last_minute) for m in minutes]
    daily = [1.0] * SLOTS
    weekly = [1.0] * 7
    a, b = sum(history) / n, 0.0
    for _ in range(ROUNDS):
        level = [max(a + b * x, 1e-9) for x in xs]
        daily = _factors(history, level, weekly, days, slots, SLOTS)
        weekly = _factors(history, level, daily, slots, days, 7)
        deseasoned = [
            y / max(daily[s] * weekly[d], 1e-9)
            for y, s, d in zip(history, slots, days, strict=True)
        ]
        a, b = _line(xs, deseasoned)
    model = SeasonalModel(
        fitted_until=last_minute,
        history_minutes=n,
        a=a,
        b=b,
        daily=tuple(daily),
        weekly=tuple(weekly),
        seen_days=frozenset(days),
        spread=0.0,
        band=band,
    )
    # The band: how far each minute strayed from what the forecast would have said a minute
    # before (the fit scaled by the previous hour's level ratio), in Poisson units.
    fits = [model.fitted(m) for m in minutes]
    standardised = []
    sum_y = sum_f = 0.0
    for t, (y, f) in enumerate(zip(history, fits, strict=True)):
        if t >= LEVEL_WINDOW_MIN:
            ratio = _clip_ratio(sum_y, sum_f)
            predicted = f * ratio
            standardised.append((y - predicted) / math.sqrt(max(predicted, 1.0)))
            sum_y -= history[t - LEVEL_WINDOW_MIN]
            sum_f -= fits[t - LEVEL_WINDOW_MIN]
        sum_y += y
        sum_f += f
    return replace(model, spread=robust_spread(standardised, band))


def robust_spread(standardised: Sequence[float], band: float) -> float:
    """The band's half-width in Poisson units: the normal quantile of ``band`` times a
    robust sigma of the standardised residuals (1.4826 × their median absolute deviation).
    Robust on purpose: bursts are a few per cent of the minutes but would set a plain
    quantile, widening the band of every ordinary minute; bursts are the recent
    correction's job (:func:`_recent_error`), not the band's."""
    if not standardised:
        return NormalDist().inv_cdf(band)
    centre = statistics.median(standardised)
    mad = statistics.median(abs(z - centre) for z in standardised)
    return NormalDist().inv_cdf(band) * 1.4826 * mad


def fit_forecast(
    history: Sequence[float],
    last_minute: int,
    *,
    horizon: int = 15,
    band: float = 0.95,
) -> Forecast:
    """Fit and forecast in one go: ``horizon`` minutes after ``last_minute`` from
    ``history`` (the seasonal model with a day of history or more, else the recent mean)."""
    _check_band(band)
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    if len(history) < DAY_MIN:
        return recent_mean_forecast(history, last_minute, horizon=horizon, band=band)
    return fit_model(history, last_minute, band=band).forecast(history, last_minute, horizon)


def _check_band(band: float) -> None:
    if not 0.5 <= band < 1:
        raise ValueError(f"band must be within [0.5, 1), got {band}")


def _factors(
    ys: Sequence[float],
    level: Sequence[float],
    other: Sequence[float],
    other_index: Sequence[int],
    index: Sequence[int],
    size: int,
) -> list[float]:
    """Estimates of one seasonal factor (mean 1 over the groups seen) given the level and
    the other factor: per group, the median of y / (expected without this factor).

    The median, not the mean: a burst of ×3 for half an hour on one of the seven days
    would otherwise lift that time of day's factor for every day by a third, and the
    forecast would expect the burst again; bursts are the recent correction's business."""
    ratios: list[list[float]] = [[] for _ in range(size)]
    for y, lv, o, i in zip(ys, level, other_index, index, strict=True):
        expected = lv * other[o]
        if expected > 0:
            ratios[i].append(y / expected)
    raw = [statistics.median(r) if r else None for r in ratios]
    seen = [r for r in raw if r is not None]
    mean = sum(seen) / len(seen) if seen else 1.0
    if mean <= 0:
        return [1.0] * size
    return [r / mean if r is not None else 1.0 for r in raw]


def _level_ratio(actual: Sequence[float], fitted: Sequence[float]) -> float:
    """How the last hour compared with the seasons: sum(actual) / sum(fitted), bounded.
    It carries what one week of history cannot separate from the weekday factors (the
    trend since the same weekday last week) and any shift of level today."""
    return _clip_ratio(sum(actual), sum(fitted))


def _clip_ratio(actual: float, fitted: float) -> float:
    if fitted <= 0:
        return 1.0
    return min(LEVEL_RATIO_MAX, max(1 / LEVEL_RATIO_MAX, actual / fitted))


def _recent_error(residuals: Sequence[float], noise: float = 0.0) -> tuple[float, float]:
    """What the seasons missed lately, carried into the forecast: the exponentially weighted
    mean of the last minutes' residuals (newest weighs most). When the last minute was
    above the band (its residual beyond ``noise``, the band's half-width), a burst the
    seasons did not foresee has begun: then never less than that residual, and its growth
    over the minute before is returned too (the forecast carries it :data:`RAMP_MIN`
    minutes further: bursts build over minutes). The asymmetry is deliberate: a burst must
    raise the very next minutes in full (scaling up late is what breaches the SLA), while a
    dip only lowers them as the mean follows; within the band, noise moves only the mean."""
    tail = residuals[-RECENT_WINDOW_MIN:]
    if not tail:
        return 0.0, 0.0
    decay: float = 0.5 ** (1 / RECENT_HALFLIFE_MIN)
    weights = [decay ** (len(tail) - 1 - i) for i in range(len(tail))]
    mean = sum(w * r for w, r in zip(weights, tail, strict=True)) / sum(weights)
    last = float(tail[-1])
    if last <= noise:
        return mean, 0.0
    growth = max(0.0, last - tail[-2]) if len(tail) > 1 else 0.0
    return max(mean, last), growth


def recent_mean_forecast(
    history: Sequence[float], last_minute: int, *, horizon: int = 15, band: float = 0.95
) -> Forecast:
    """A fresh install's forecast: the recent mean, and a band from the recent minutes'
    spread (a Poisson's when there are too few)."""
    future = [last_minute + h for h in range(1, horizon + 1)]
    tail = list(history[-FALLBACK_WINDOW_MIN:])
    mean = sum(tail) / len(tail) if tail else 0.0
    spread = _quantile([(y - mean) / math.sqrt(max(mean, 1.0)) for y in tail], band)
    spread = max(spread, 1.645 if band <= 0.95 else 2.33)  # never narrower than Poisson's
    upper = mean + spread * math.sqrt(max(mean, 1.0))
    return Forecast(
        points=tuple(ForecastPoint(m, mean, upper) for m in future),
        model="recent-mean",
        history_minutes=len(history),
        band=band,
        notes=(
            f"only {len(history)} minutes of history: a day is needed for the seasonal "
            f"model; forecasting the mean of the last {len(tail)} minutes",
        ),
    )
