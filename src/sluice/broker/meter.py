"""What the concurrency controller needs to know about broker calls: how many, how long,
how many failed, how many were throttled (HTTP 429).

Each worker process counts its calls here, in memory, on the per-turn path (no Redis
call per job); its heartbeat adds what it counted since the previous beat to the queue's
cumulative ``broker:stats`` hash (:meth:`BrokerMeter.flush`), so the controller and
/metrics read one set of counters for every worker, whichever process they run in, and a
reader that diffs two readings gets exact rates over any interval.

Who counts: the reply pipeline counts the broker handler's call itself (its ``broker_meter``
attribute, :class:`sluice.service.pipeline.ReplyPipeline`), not the whole turn with its
Chatwoot calls; for any other job handler the handler *is* the broker, and the worker
counts each run (:mod:`sluice.worker.processor`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sluice.keys import QueueKeys
from sluice.redis.cluster import RedisClient

if TYPE_CHECKING:
    from sluice.broker.base import Reply, ReplyHandler, Turn

__all__ = ["BrokerMeter", "BrokerTally", "MeteredHandler", "is_throttled", "read_totals"]

FIELDS = ("calls", "errors", "throttled", "latency_ms")


def is_throttled(exc: BaseException) -> bool:
    """Whether a failure says "too many requests" (HTTP 429): a handler marks it with a
    true ``throttled`` attribute (:class:`sluice.broker.base.HandlerError` does for a 429),
    or raises an httpx status error carrying a 429 response."""
    if getattr(exc, "throttled", False) is True:
        return True
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) == 429


@dataclass(slots=True)
class BrokerTally:
    """Counts of broker calls: every call, the failed ones (throttled included), the
    throttled ones, and the summed latency of all of them in milliseconds."""

    calls: int = 0
    errors: int = 0
    throttled: int = 0
    latency_ms: float = 0.0

    def __bool__(self) -> bool:
        return self.calls > 0

    def minus(self, earlier: BrokerTally) -> BrokerTally:
        """What happened between ``earlier`` and this reading of cumulative counters."""
        return BrokerTally(
            max(0, self.calls - earlier.calls),
            max(0, self.errors - earlier.errors),
            max(0, self.throttled - earlier.throttled),
            max(0.0, self.latency_ms - earlier.latency_ms),
        )

    @property
    def mean_latency_ms(self) -> float | None:
        return self.latency_ms / self.calls if self.calls else None


class BrokerMeter:
    """A process's broker-call counts since its last :meth:`flush`."""

    def __init__(self) -> None:
        self._pending = BrokerTally()

    def record(self, latency_s: float, error: BaseException | None = None) -> None:
        """One call that took ``latency_s`` and ended with ``error`` (None: answered)."""
        tally = self._pending
        tally.calls += 1
        tally.latency_ms += max(0.0, latency_s) * 1000.0
        if error is not None:
            tally.errors += 1
            if is_throttled(error):
                tally.throttled += 1

    def take(self) -> BrokerTally:
        """The counts since the previous take, and start afresh."""
        taken, self._pending = self._pending, BrokerTally()
        return taken

    def give_back(self, tally: BrokerTally) -> None:
        """Counts a failed flush could not write: they go with the next one."""
        pending = self._pending
        pending.calls += tally.calls
        pending.errors += tally.errors
        pending.throttled += tally.throttled
        pending.latency_ms += tally.latency_ms

    async def flush(self, redis: RedisClient, keys: QueueKeys) -> None:
        """Add the counts since the last flush to the queue's cumulative counters."""
        tally = self.take()
        if not tally:
            return
        try:
            pipe = redis.pipeline(transaction=False)
            pipe.hincrby(keys.broker_stats, "calls", tally.calls)
            pipe.hincrby(keys.broker_stats, "errors", tally.errors)
            pipe.hincrby(keys.broker_stats, "throttled", tally.throttled)
            pipe.hincrby(keys.broker_stats, "latency_ms", round(tally.latency_ms))
            await pipe.execute()
        except BaseException:
            self.give_back(tally)
            raise


async def read_totals(redis: RedisClient, keys: QueueKeys) -> BrokerTally:
    """The queue's cumulative broker counters (zeros before the first call)."""
    raw = await redis.hmget(keys.broker_stats, list(FIELDS))
    calls, errors, throttled, latency = (int(v) if v is not None else 0 for v in raw)
    return BrokerTally(calls, errors, throttled, float(latency))


class MeteredHandler:
    """A reply handler whose every call is counted in ``meter``: its latency, and whether it
    failed or was throttled. A call cancelled (the SLA budget's backstop, or shutdown)
    is not counted: it says nothing the timeout does not already."""

    def __init__(self, handler: ReplyHandler, meter: BrokerMeter) -> None:
        self.handler = handler
        self.name = handler.name
        self.meter = meter

    async def answer(self, turn: Turn) -> Reply:
        started = time.monotonic()
        try:
            reply = await self.handler.answer(turn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.meter.record(time.monotonic() - started, exc)
            raise
        self.meter.record(time.monotonic() - started)
        return reply
