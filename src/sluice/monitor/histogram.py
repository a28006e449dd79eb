"""Log-bucketed histograms: percentiles you can merge across processes and time.

The Lua scripts count each duration in bucket ``b = floor(ln(ms) / ln(1.05)) + 1`` (0 for
under 1 ms), so a bucket spans 5 % of its value. Windows and processes combine by adding
counts, and a percentile is read by walking the buckets: no samples are kept or sorted,
and the answer is within 2.5 % of the true value (the bucket's geometric middle).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

BASE = 1.05
_LN_BASE = math.log(BASE)


def bucket_of(ms: float) -> int:
    """The bucket the Lua side puts ``ms`` in (kept identical; see lua/lib/log_bucket.lua)."""
    if ms < 1:
        return 0
    return math.floor(math.log(ms) / _LN_BASE) + 1


def bucket_value(bucket: int) -> float:
    """A representative value of a bucket: its geometric middle (0.5 ms for bucket 0)."""
    if bucket <= 0:
        return 0.5
    return float(BASE ** (bucket - 0.5))


@dataclass
class Histogram:
    counts: dict[int, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, bucket: int, count: int = 1) -> None:
        self.counts[bucket] = self.counts.get(bucket, 0) + count

    def observe(self, ms: float) -> None:
        self.add(bucket_of(ms))

    def merge(self, other: Histogram) -> None:
        for bucket, count in other.counts.items():
            self.add(bucket, count)

    def percentile(self, pct: float) -> float | None:
        """The value under which ``pct`` % of observations fall; None without data."""
        total = self.total
        if total == 0:
            return None
        rank = max(1, math.ceil(pct / 100 * total))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return bucket_value(bucket)
        return bucket_value(max(self.counts))  # pragma: no cover - rank <= total

    @classmethod
    def from_fields(cls, fields: Mapping[str, int], prefix: str) -> Histogram:
        """Collect ``<prefix>:<bucket>`` fields of a monitoring hash."""
        hist = cls()
        marker = prefix + ":"
        for name, count in fields.items():
            if name.startswith(marker):
                hist.add(int(name[len(marker) :]), count)
        return hist

    @classmethod
    def of(cls, values: Iterable[float]) -> Histogram:
        hist = cls()
        for value in values:
            hist.observe(value)
        return hist
