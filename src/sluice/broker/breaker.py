"""A circuit breaker per AI broker: stop calling an endpoint that keeps failing.

When a model endpoint is down, every turn of its broker would otherwise spend its SLA
budget on calls that fail (or hang until their timeout), then on retries with backoff, and
end as a handoff after the SLA deadline. The breaker notices the trend and, for a cool-off,
sends the broker's turns straight to a fallback (:mod:`sluice.broker.guarded`).

States (the usual three):

* **closed** — calls go out. Each worker process keeps a rolling window of its own calls'
  outcomes (``SLUICE_BREAKER_WINDOW_S``, a monotonic clock: a wall-clock step must not
  stretch or empty the window). With at least ``SLUICE_BREAKER_MIN_CALLS`` calls in it, a
  failure ratio at or over ``SLUICE_BREAKER_FAILURE_RATIO``, or a share of calls slower
  than ``SLUICE_BREAKER_SLOW_MS`` at or over ``SLUICE_BREAKER_SLOW_RATIO``, opens it.
* **open** — no calls, every turn goes to the fallback, until the cool-off
  (``SLUICE_BREAKER_COOLOFF_S``) is over.
* **half-open** — up to ``SLUICE_BREAKER_PROBES`` probe calls go out at a time, the other
  turns still go to the fallback; that many successful probes close it, one failed (or
  slow) probe opens it again for another cool-off.

What counts. A failure is what says the endpoint is unwell: a retryable
:class:`~sluice.broker.base.HandlerError` (timeouts, transport errors such as a refused
connection, HTTP 408/429/5xx, an empty or malformed completion) and a call cancelled at the
SLA budget. A non-retryable error (401, a malformed request: 4xx about *this* request) and
an unexpected exception (a bug, or content the handler chokes on) say nothing about the
endpoint's health and are not counted; nor is a reply that made no call (a customer asking
for a human, a budget already spent).

Where the state lives. The open/half-open/closed state, the cool-off's end and the probe
slots are shared by every worker process, in one Redis hash per broker
(:meth:`~sluice.keys.QueueKeys.breaker`), changed only by the Lua scripts
``lua/breaker_*.lua`` (one per state change, each logging its transition with the reason
to the queue's event stream). Shared rather than per process because:

* with per-process breakers, N worker processes each pay ``min_calls`` failures (and the
  SLA of those turns) before tripping, and each keeps probing a dead endpoint on its own;
* a restarted worker (a deploy, a crash) would come back closed and hammer an endpoint
  that is still down: in Redis the cool-off survives any worker;
* the dashboard and /metrics (served by the API processes) read the same state the
  workers act on.

The cost is one script call per AI turn (a read on the closed path), beside the dozen Redis
calls a turn already makes and a model call of hundreds of milliseconds. The cool-off is
measured on the Redis server's clock (TIME), the one clock all processes share (a
process's monotonic clock means nothing to another process or after a restart); the
rolling windows stay per process on the monotonic clock, and only their verdict ("open,
because ...") is shared: the ratio of a sample is the ratio of the whole, so each process
sees the trend, while counting every call in Redis would add a write per turn.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, cast

from redis.commands.core import AsyncScript

from sluice.broker.config import Broker
from sluice.keys import QueueKeys
from sluice.redis import lua
from sluice.redis.cluster import RedisClient
from sluice.settings.breaker import BreakerSettings
from sluice.settings.redact import redact_urls_in

__all__ = [
    "BREAKER_SCRIPTS",
    "Admission",
    "BreakerBoard",
    "BreakerState",
    "BreakerView",
    "CircuitBreaker",
    "Outcome",
    "RollingWindow",
    "read_breakers",
]

log = logging.getLogger("sluice.breaker")

BREAKER_SCRIPTS = ("breaker_admit", "breaker_open", "breaker_probe_ok")

BreakerState = Literal["closed", "open", "half_open"]
Verdict = Literal["pass", "probe", "fallback"]

#: The gauge value of each state on /metrics (sluice_breaker_state).
STATE_VALUES: dict[str, float] = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


class Outcome(Enum):
    """What one call says about the endpoint's health."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"  # says nothing: not counted


@dataclass(frozen=True, slots=True)
class Admission:
    """The breaker's answer before a call: ``pass`` (closed), ``probe`` (half-open, this
    call is a probe) or ``fallback`` (open: do not call). ``generation`` ties the call's
    outcome to the state it was admitted in."""

    verdict: Verdict
    generation: int
    state: BreakerState
    cooloff_left_ms: float = 0.0


@dataclass
class RollingWindow:
    """Outcomes of one process's calls over the last ``window_s`` seconds of a monotonic
    clock: (when, failed, slow) per counted call."""

    window_s: float
    clock: Callable[[], float] = time.monotonic
    entries: deque[tuple[float, bool, bool]] = field(default_factory=deque)

    def add(self, *, failed: bool, slow: bool) -> None:
        self.entries.append((self.clock(), failed, slow))
        self._trim()

    def counts(self) -> tuple[int, int, int]:
        """(calls, failures, slow calls) within the window."""
        self._trim()
        failures = sum(1 for _, failed, _ in self.entries if failed)
        slow = sum(1 for _, _, was_slow in self.entries if was_slow)
        return len(self.entries), failures, slow

    def clear(self) -> None:
        self.entries.clear()

    def _trim(self) -> None:
        horizon = self.clock() - self.window_s
        while self.entries and self.entries[0][0] < horizon:
            self.entries.popleft()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class CircuitBreaker:
    """The breaker of one broker, as one worker process uses it: :meth:`admit` before a
    call, :meth:`record` after it. Shared state in Redis, the rolling window here."""

    def __init__(
        self,
        redis: RedisClient,
        keys: QueueKeys,
        broker: str,
        settings: BreakerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        scripts: dict[str, AsyncScript] | None = None,
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.window = RollingWindow(settings.window_s, clock)
        self._keys = [keys.breaker(broker), keys.events, keys.breakers]
        self._scripts = scripts or lua.register_scripts(redis, "sluice.broker", BREAKER_SCRIPTS)
        # The generation the window's entries were counted under: a transition made by any
        # process (an open, a close) starts a fresh window here.
        self._window_generation = -1

    async def admit(self) -> Admission:
        """May a call go out now? (One script call; see lua/breaker_admit.lua.)"""
        s = self.settings
        verdict, generation, state, left = await self._scripts["breaker_admit"](
            keys=self._keys,
            args=[
                self.broker,
                s.probes,
                round(s.probe_timeout_s * 1000),
                round(s.cooloff_s * 1000),
            ],
        )
        admission = Admission(
            cast(Verdict, _text(verdict)),
            int(generation),
            cast(BreakerState, _text(state)),
            float(left),
        )
        if admission.generation != self._window_generation:
            self.window.clear()
            self._window_generation = admission.generation
        return admission

    def is_slow(self, latency_ms: float) -> bool:
        return bool(self.settings.slow_ms) and latency_ms >= self.settings.slow_ms

    async def record(
        self, admission: Admission, outcome: Outcome, latency_ms: float, error: str = ""
    ) -> None:
        """Count a call admitted by ``admission``; open or close the breaker when the
        outcome says so (the transition is logged by the script, with its reason)."""
        if admission.verdict == "probe":
            await self._probe_result(admission, outcome, latency_ms, error)
        elif admission.verdict == "pass" and outcome is not Outcome.NEUTRAL:
            await self._closed_result(admission, outcome, latency_ms, error)

    async def _probe_result(
        self, admission: Admission, outcome: Outcome, latency_ms: float, error: str
    ) -> None:
        slow = self.is_slow(latency_ms)
        if outcome is Outcome.FAILURE or (outcome is Outcome.SUCCESS and slow):
            reason = (
                f"probe call failed after {latency_ms:.0f} ms: {_short(error)}"
                if outcome is Outcome.FAILURE
                else f"probe call took {latency_ms:.0f} ms, over the latency budget of "
                f"{self.settings.slow_ms:g} ms"
            )
            await self._open("half_open", admission.generation, reason)
            return
        counted = "1" if outcome is Outcome.SUCCESS else "0"
        closed, _, _ = await self._scripts["breaker_probe_ok"](
            keys=self._keys,
            args=[
                self.broker,
                admission.generation,
                self.settings.probes,
                f"{latency_ms:.0f}",
                counted,
            ],
        )
        if int(closed):
            log.info("circuit breaker of %s closed: probe calls succeeded", self.broker)

    async def _closed_result(
        self, admission: Admission, outcome: Outcome, latency_ms: float, error: str
    ) -> None:
        if admission.generation != self._window_generation:
            self.window.clear()
            self._window_generation = admission.generation
        self.window.add(failed=outcome is Outcome.FAILURE, slow=self.is_slow(latency_ms))
        reason = self.verdict(error)
        if reason is not None:
            await self._open("closed", admission.generation, reason)

    def verdict(self, last_error: str = "") -> str | None:
        """Why the window says "open", or None while it does not."""
        s = self.settings
        calls, failures, slow = self.window.counts()
        if calls < s.min_calls:
            return None
        if failures / calls >= s.failure_ratio:
            last = f"; last error: {_short(last_error)}" if last_error else ""
            return (
                f"failure ratio {failures / calls:.2f} over {calls} calls in the last "
                f"{s.window_s:g} s (threshold {s.failure_ratio:g}){last}"
            )
        if s.slow_ms and slow / calls >= s.slow_ratio:
            return (
                f"latency over budget: {slow} of {calls} calls in the last {s.window_s:g} s "
                f"took {s.slow_ms:g} ms or more (ratio {slow / calls:.2f}, threshold "
                f"{s.slow_ratio:g})"
            )
        return None

    async def _open(self, expected: BreakerState, generation: int, reason: str) -> None:
        opened, _, new_generation, _ = await self._scripts["breaker_open"](
            keys=self._keys,
            args=[
                self.broker,
                expected,
                generation,
                round(self.settings.cooloff_s * 1000),
                reason,
            ],
        )
        self.window.clear()
        self._window_generation = int(new_generation)
        if int(opened):
            log.warning("circuit breaker of %s opened: %s", self.broker, reason)


def _short(text: str, limit: int = 160) -> str:
    """An error's text for a reason (stored, logged, shown): one line, short, and with the
    credentials of any URL in it masked (the ``llm`` handler scrubs its own errors; a
    plug-in AI handler's may quote a URL with a password or a token in its query)."""
    text = " ".join(redact_urls_in(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class BreakerBoard:
    """The breakers of one worker process: one per AI broker, sharing the script objects."""

    def __init__(
        self,
        redis: RedisClient,
        keys: QueueKeys,
        brokers: Sequence[Broker],
        settings: BreakerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        scripts = lua.register_scripts(redis, "sluice.broker", BREAKER_SCRIPTS)
        self.breakers = {
            b.name: CircuitBreaker(redis, keys, b.name, settings, clock=clock, scripts=scripts)
            for b in brokers
            if b.kind == "ai"
        }

    def get(self, broker: str) -> CircuitBreaker | None:
        return self.breakers.get(broker)


@dataclass(frozen=True)
class BreakerView:
    """A breaker as the dashboard and /metrics show it."""

    broker: str
    state: BreakerState
    since_ms: float | None
    until_ms: float | None
    reason: str
    transitions: dict[str, int]
    fallbacks: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "state": self.state,
            "since_ms": self.since_ms,
            "until_ms": self.until_ms,
            "reason": self.reason,
            "transitions": self.transitions,
            "fallbacks": self.fallbacks,
        }


async def read_breakers(redis: RedisClient, keys: QueueKeys) -> list[BreakerView]:
    """Every breaker that has state in Redis (a broker's first call creates it), by name.

    An open breaker whose cool-off is over (on the Redis clock) reads as half-open: that is
    what the next call finds (the hash only changes on a call). Without it, a breaker with
    no more traffic, or switched off (``SLUICE_BREAKER_ENABLED=false``) while open, showed
    "open" for ever, on the dashboard and on /metrics (and SluiceBrokerBreakerOpen fired).
    """
    names = sorted(_text(n) for n in await redis.smembers(keys.breakers))
    if not names:
        return []
    pipe = redis.pipeline(transaction=False)
    pipe.time()
    for name in names:
        pipe.hgetall(keys.breaker(name))
    (seconds, micros), *hashes = await pipe.execute()
    now_ms = int(seconds) * 1000 + int(micros) / 1000
    views = []
    for name, raw in zip(names, hashes, strict=True):
        data = {_text(k): _text(v) for k, v in raw.items()}
        state = data.get("state", "closed")
        if state == "open" and float(data.get("until_ms", 0)) <= now_ms:
            state = "half_open"
        views.append(
            BreakerView(
                broker=name,
                state=cast(BreakerState, state if state in STATE_VALUES else "closed"),
                since_ms=float(data["since_ms"]) if "since_ms" in data else None,
                until_ms=float(data["until_ms"])
                if state == "open" and "until_ms" in data
                else None,
                reason=data.get("reason", ""),
                transitions={s: int(data.get(f"t:{s}", 0)) for s in STATE_VALUES},
                fallbacks=int(data.get("fallback", 0)),
            )
        )
    return views
