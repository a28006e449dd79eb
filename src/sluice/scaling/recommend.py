"""Turn a forecast's upper band into a number of worker processes.

desired = ceil(arrivals/s × mean service time / (slots per process × target utilization)),
bounded by the minimum and maximum. Arrivals × service time is the number of slots busy on
average (Little's law); dividing by the slots one process has and by the utilization the
operator wants to run at gives the processes. The upper band, not the expected value, goes
in: a band quantile of 0.95 means the forecast minute exceeds it one time in twenty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Recommendation", "recommend"]


@dataclass(frozen=True)
class Recommendation:
    """The processes wanted, the figures it came from and a sentence that says why."""

    desired: int
    unbounded: int
    arrivals_per_s: float
    service_time_s: float
    slots_per_process: int
    target_utilization: float
    minimum: int
    maximum: int
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {
            "desired_workers": self.desired,
            "unbounded_workers": self.unbounded,
            "arrivals_per_s": self.arrivals_per_s,
            "service_time_s": self.service_time_s,
            "slots_per_process": self.slots_per_process,
            "target_utilization": self.target_utilization,
            "min_workers": self.minimum,
            "max_workers": self.maximum,
            "reason": self.reason,
        }


def recommend(
    arrivals_per_s: float,
    service_time_s: float,
    slots_per_process: int,
    target_utilization: float,
    minimum: int,
    maximum: int,
) -> Recommendation:
    """The bounded number of processes for ``arrivals_per_s`` (the forecast's upper band)."""
    if slots_per_process < 1:
        raise ValueError(f"slots per process must be at least 1, got {slots_per_process}")
    if not 0 < target_utilization <= 1:
        raise ValueError(f"target utilization must be in (0, 1], got {target_utilization}")
    if not 1 <= minimum <= maximum:
        raise ValueError(f"need 1 <= minimum ({minimum}) <= maximum ({maximum})")
    busy_slots = max(0.0, arrivals_per_s) * max(0.0, service_time_s)
    # A hair under the integer counts as the integer: 2.0000000001 processes is 2.
    unbounded = math.ceil(busy_slots / (slots_per_process * target_utilization) - 1e-9)
    desired = min(maximum, max(minimum, unbounded))
    figures = (
        f"{arrivals_per_s:.3g} arrivals/s × {service_time_s:.3g} s = {busy_slots:.3g} busy "
        f"slots / ({slots_per_process} slots × {target_utilization:g} utilization) "
        f"= {unbounded}"
    )
    if unbounded > maximum:
        reason = f"{figures}, capped at the maximum {maximum}"
    elif unbounded < minimum:
        reason = f"{figures}, raised to the minimum {minimum}"
    else:
        reason = figures
    return Recommendation(
        desired=desired,
        unbounded=unbounded,
        arrivals_per_s=arrivals_per_s,
        service_time_s=service_time_s,
        slots_per_process=slots_per_process,
        target_utilization=target_utilization,
        minimum=minimum,
        maximum=maximum,
        reason=reason,
    )
