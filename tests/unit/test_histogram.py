"""Log-bucketed histograms: percentiles within 2.5 %, merging is exact."""

from __future__ import annotations

import math
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sluice.monitor.histogram import Histogram, bucket_of, bucket_value
from sluice.monitor.metric_names import DURATION_BUCKETS_S

LUA = Path(__file__).resolve().parents[2] / "src/sluice/queue/lua/lib/monitor.lua"


def nearest_rank(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def test_known_inputs() -> None:
    hist = Histogram.of([100.0] * 50 + [1000.0] * 45 + [10_000.0] * 5)
    assert hist.total == 100
    assert abs(hist.percentile(50) - 100) / 100 < 0.025  # type: ignore[operator]
    assert abs(hist.percentile(95) - 1000) / 1000 < 0.025  # type: ignore[operator]
    assert abs(hist.percentile(99) - 10_000) / 10_000 < 0.025  # type: ignore[operator]
    assert Histogram().percentile(50) is None


def test_sub_millisecond_values_share_bucket_zero() -> None:
    assert bucket_of(0.0) == bucket_of(0.99) == 0
    assert bucket_value(0) == 0.5
    assert bucket_of(1.0) == 1


@given(
    st.lists(st.floats(1.0, 3_600_000.0), min_size=1, max_size=300),
    st.sampled_from([50.0, 90.0, 95.0, 99.0, 100.0]),
)
def test_percentile_is_within_bucket_precision(values: list[float], pct: float) -> None:
    estimate = Histogram.of(values).percentile(pct)
    exact = nearest_rank(values, pct)
    assert estimate is not None
    assert abs(estimate - exact) / exact <= 0.0250001


@given(st.lists(st.floats(0, 1e6)), st.lists(st.floats(0, 1e6)))
def test_merge_equals_histogram_of_union(a: list[float], b: list[float]) -> None:
    merged = Histogram.of(a)
    merged.merge(Histogram.of(b))
    assert merged.counts == Histogram.of(a + b).counts


def test_lua_prometheus_bounds_match_the_python_table() -> None:
    text = LUA.read_text()
    found = re.search(r"PROM_BOUNDS_MS = \{([^}]*)\}", text, re.S)
    assert found is not None
    lua_bounds = [int(x) for x in found.group(1).replace("\n", " ").split(",")]
    assert lua_bounds == [round(s * 1000) for s in DURATION_BUCKETS_S]
