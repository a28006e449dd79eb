"""An AI broker's handler behind its circuit breaker, with the fallback for when it is open.

:class:`GuardedHandler` is itself a :class:`~sluice.broker.base.ReplyHandler`, so the
reply pipeline runs it exactly like the handler it wraps: the same SLA budget, the same
``answer_or_handoff`` (a final failure becomes a handoff), the same fenced, exactly-once
POST of the reply. Only *who* produces the reply changes: while the breaker is open (or
half-open and out of probe slots) the turn is answered by the fallback (the ``template``
handler, or the ``handoff`` handler: a human) without calling the endpoint, so no retry
and no SLA budget is spent on it. A turn therefore gets one reply whoever answers it: the
breaker decides before any call, and a retried turn goes through the pipeline's check for
an earlier reply first, as always.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sluice.broker.base import HandlerError, Reply, ReplyHandler, Turn
from sluice.broker.breaker import Admission, CircuitBreaker, Outcome
from sluice.worker.types import REDIS_DOWN, raise_if_cancelled

__all__ = ["GuardedHandler"]

log = logging.getLogger("sluice.breaker")

#: What a turn is admitted with when the breaker's state cannot be read (Redis away or
#: failing over): closed. The breaker protects the model endpoint; it must never be the
#: reason a turn fails, nor a model's answer lost because its outcome could not be counted.
UNKNOWN = Admission("pass", -1, "closed")

#: A cancellation with at most this much of the turn's budget left is the budget's (its
#: timer and the turn's wall-clock deadline agree to within the event loop's resolution).
BUDGET_SLACK_MS = 100.0


class GuardedHandler:
    """``inner`` behind ``breaker``; ``fallback`` answers while the breaker says no."""

    def __init__(
        self,
        inner: ReplyHandler,
        breaker: CircuitBreaker,
        fallback: ReplyHandler,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.name = inner.name  # logs and traces keep naming the broker's handler
        self.breaker = breaker
        self.fallback = fallback
        self._clock = clock
        # Outcomes recorded after a cancellation run on: the cancelled turn must not wait.
        self._background: set[asyncio.Task[None]] = set()

    async def answer(self, turn: Turn) -> Reply:
        admission = await self._admit()
        if admission.verdict == "fallback":
            return await self._fallback(turn, admission)
        started = self._clock()
        try:
            reply = await self.inner.answer(turn)
        except HandlerError as exc:
            outcome = Outcome.FAILURE if exc.retryable else Outcome.NEUTRAL
            await self._record(admission, outcome, self._since(started), str(exc))
            raise
        except (asyncio.CancelledError, TimeoutError) as exc:
            # Cancelled at the SLA budget: a call that did not answer in time counts as
            # failed and slow. Cancelled with budget left (the worker stopping after its
            # grace, a deploy, a scale-down; an operator's cancel) it says nothing about the
            # endpoint: counted, a stopping worker's calls in flight could open the breaker
            # for every worker. Recorded in the background, so the cancellation is not held
            # up by a Redis call.
            if isinstance(exc, TimeoutError) or turn.remaining_ms() <= BUDGET_SLACK_MS:
                self._spawn(admission, Outcome.FAILURE, self._since(started))
            else:
                self._spawn(admission, Outcome.NEUTRAL, self._since(started))
            raise
        except Exception:
            # A bug, or content the handler chokes on: nothing about the endpoint's health.
            await self._record(admission, Outcome.NEUTRAL, self._since(started))
            raise
        # A reply without a model call (a handoff keyword, the budget spent, nothing to
        # answer) says nothing either.
        outcome = Outcome.SUCCESS if reply.content and not reply.handoff else Outcome.NEUTRAL
        await self._record(admission, outcome, self._since(started))
        return reply

    async def _admit(self) -> Admission:
        try:
            return await self.breaker.admit()
        except REDIS_DOWN as exc:
            raise_if_cancelled()  # a cancellation redis-py turned into an error
            log.warning(
                "circuit breaker of %s unreadable (%s): calling the model as if closed",
                self.breaker.broker,
                type(exc).__name__,
            )
            return UNKNOWN

    async def _record(
        self, admission: Admission, outcome: Outcome, latency_ms: float, error: str = ""
    ) -> None:
        """Count the outcome; a Redis error is logged, never raised: the turn's reply (or
        its own error) matters more than one missed count."""
        if admission is UNKNOWN:
            return
        try:
            await self.breaker.record(admission, outcome, latency_ms, error)
        except REDIS_DOWN as exc:
            raise_if_cancelled()
            log.warning(
                "circuit breaker of %s: outcome not recorded (%s)",
                self.breaker.broker,
                type(exc).__name__,
            )

    async def _fallback(self, turn: Turn, admission: Admission) -> Reply:
        reply = await self.fallback.answer(turn)
        why = f"circuit breaker of {self.breaker.broker} {admission.state.replace('_', '-')}"
        return Reply(
            reply.content,
            handoff=reply.handoff,
            reason=f"{why}: {reply.reason}" if reply.reason else why,
            via=self.fallback.name,
        )

    def _since(self, started: float) -> float:
        return (self._clock() - started) * 1000.0

    def _spawn(self, admission: Admission, outcome: Outcome, latency_ms: float) -> None:
        task = asyncio.get_running_loop().create_task(
            self._record_quietly(admission, outcome, latency_ms, "no answer before the SLA budget")
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _record_quietly(
        self, admission: Admission, outcome: Outcome, latency_ms: float, error: str
    ) -> None:
        if admission is UNKNOWN:
            return
        try:
            await self.breaker.record(admission, outcome, latency_ms, error)
        except Exception as exc:  # Redis unreachable: the next call counts again
            log.warning("circuit breaker of %s: outcome not recorded: %s", self.breaker.broker, exc)
