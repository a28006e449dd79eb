"""A model of an AI broker's model endpoint, for load tests and benchmarks of adaptive
concurrency (benchmarks/adaptive_concurrency.py): how long a completion takes and when the
endpoint refuses, as a function of time and of how many requests are in flight.

It follows how hosted and self-hosted LLM endpoints behave under load:

- **Latency** is ``base_latency_s`` (a schedule may change it over time: the provider's
  own incidents, which no client causes) while at most ``knee`` requests are in flight;
  beyond, it grows with the square of the overload (``base × (in flight / knee)²``),
  so the endpoint completes *fewer* requests per second the more it is sent. That is what
  a continuous-batching server (vLLM, TGI) does once its KV cache is full: it preempts and
  recomputes running sequences, and every request slows down.
- **429** with Retry-After once more than ``capacity`` requests are in flight: OpenAI's
  rate limits answer 429 ("Rate limit reached ... Please try again in ...") and Azure
  OpenAI's provisioned deployments answer 429 with ``retry-after-ms`` when the deployment
  is at 100 % utilization (learn.microsoft.com, "Get started using Provisioned
  Deployments on the Azure OpenAI Service"); the refusal comes quickly
  (``reject_latency_s``), the wait it asks for is ``retry_after_s``.

``capacity`` None: the endpoint never refuses (a plain slow broker, as in the latency-step
scenario). The model is in-process: the benchmark measures Sluice's control, not HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sluice.broker.base import HandlerError

__all__ = ["LlmEndpointModel", "step_schedule"]


def step_schedule(steps: list[tuple[float, float]]) -> Callable[[float], float]:
    """A latency schedule: ``[(from_s, latency_s), ...]`` sorted by ``from_s``; before the
    first step, the first latency."""

    def latency_at(elapsed_s: float) -> float:
        current = steps[0][1]
        for start, latency in steps:
            if elapsed_s >= start:
                current = latency
        return current

    return latency_at


@dataclass
class LlmEndpointModel:
    """See the module docstring. ``call()`` is one completion request."""

    base_latency_s: Callable[[float], float]
    knee: int | None = None
    capacity: int | None = None
    retry_after_s: float = 1.0
    reject_latency_s: float = 0.02
    clock: Callable[[], float] = time.monotonic
    in_flight: int = 0
    calls: int = 0
    throttled: int = 0
    started_at: float = field(default_factory=time.monotonic)

    def latency_for(self, in_flight: int, elapsed_s: float) -> float:
        base = self.base_latency_s(elapsed_s)
        if self.knee is not None and in_flight > self.knee:
            return base * (in_flight / self.knee) ** 2
        return base

    async def call(self) -> None:
        """One request: sleeps for its latency, or raises a throttled HandlerError."""
        self.calls += 1
        if self.capacity is not None and self.in_flight >= self.capacity:
            self.throttled += 1
            await asyncio.sleep(self.reject_latency_s)
            raise HandlerError(
                "llm returned HTTP 429: rate limit reached, please try again",
                retryable=True,
                throttled=True,
                retry_after_s=self.retry_after_s,
            )
        self.in_flight += 1
        try:
            elapsed = self.clock() - self.started_at
            await asyncio.sleep(self.latency_for(self.in_flight, elapsed))
        finally:
            self.in_flight -= 1
