"""Priority classes and the SLA target each one is scheduled against.

The ready set is ordered earliest deadline first, where a lane head's deadline is its
class's target counted from when it became eligible. Targets, not strict levels, make
classes interleave sensibly: a `low` message that has waited 25 s goes before a `normal`
one that arrived a moment ago.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_TARGETS_MS: Mapping[str, int] = {
    "urgent": 2_000,
    "high": 5_000,
    "normal": 10_000,
    "low": 30_000,
}


def target_ms(priority: str, targets: Mapping[str, int] = DEFAULT_TARGETS_MS) -> int:
    """The SLA target of a class; an unknown class is a caller's bug, said clearly."""
    try:
        return targets[priority]
    except KeyError:
        known = ", ".join(sorted(targets))
        raise ValueError(f"unknown priority {priority!r}; known classes: {known}") from None
