"""The worker's half of the retry policy: what a handler's exception means for its turn.

A handler that raised leaves one of three outcomes, and the worker decides two of them:

- **retryable** (any exception but :class:`~sluice.errors.NonRetryableError`): try the
  turn again after an exponential back-off (:func:`backoff_ms`), at the head of its lane;
- **non-retryable** (:class:`~sluice.errors.NonRetryableError`): retrying cannot help, bury
  the turn in the dead letters now.

The third, *give up and bury* a retryable failure because its attempts are used up, is
decided by ``fail.lua``, which applies all of it atomically: only Redis knows every member's
attempt count, and it splits a failed batch into solo retries (docs/engine.md, "Bursts").
Lost leases and cancellations are no failures at all and never come here (see
:mod:`sluice.worker.processor`).

A failure is recorded as soon as the handler raises, not with the next exchange: the lane
waits for the turn's outcome. While Redis cannot be reached the record is retried (20 times
at most, up to 2 s apart) as long as the turn's lease lasts; past that its recovery decides.
"""

from __future__ import annotations

import asyncio
import logging
import random

from sluice.errors import NonRetryableError
from sluice.queue.job import Job
from sluice.queue.queue import Queue
from sluice.worker.types import REDIS_DOWN

log = logging.getLogger("sluice.worker")


def backoff_ms(attempt: int, base_ms: int, cap_ms: int) -> int:
    """Exponential backoff with "equal jitter": half fixed, half random, so retries of
    many conversations spread out but never retry sooner than half the nominal delay."""
    nominal = min(cap_ms, base_ms * 2 ** max(0, attempt - 1))
    return int(nominal / 2 + random.uniform(0, nominal / 2))


def is_retryable(exc: Exception) -> bool:
    """Whether another attempt may succeed: the handler says so by raising
    :class:`~sluice.errors.NonRetryableError` when it cannot."""
    return not isinstance(exc, NonRetryableError)


def describe(exc: Exception) -> str:
    """The error recorded on the job (and shown in the dead letters)."""
    return f"{type(exc).__name__}: {exc}"


class RetryPolicy:
    """Records a failed turn in Redis with the back-off its attempt earned."""

    __slots__ = ("base_ms", "max_ms", "queue")

    def __init__(self, queue: Queue, *, base_ms: int, max_ms: int) -> None:
        self.queue = queue
        self.base_ms = base_ms
        self.max_ms = max_ms

    async def record_failure(self, job: Job, exc: Exception) -> str:
        """Tell Redis the turn failed: fail.lua retries it after the back-off or buries it.
        Returns what became of it: ``retry``, ``dead``, or ``lost`` (no longer ours, or
        Redis could not be told)."""
        retryable = is_retryable(exc)
        error = describe(exc)
        delay = backoff_ms(job.attempt, self.base_ms, self.max_ms)
        for attempt in range(20):
            if job.lease is not None and job.lease.lost:
                return "lost"  # no longer ours: its recovery decides
            try:
                outcome = await self.queue.fail(job, error, backoff_ms=delay, retryable=retryable)
            except REDIS_DOWN as down:
                log.warning("cannot record failure of job %s yet (%s)", job.id, down)
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
                continue
            level = logging.WARNING if outcome == "retry" else logging.ERROR
            log.log(
                level,
                "job %s (%s) attempt %d/%d failed: %s -> %s",
                job.id,
                job.key,
                job.attempt,
                job.max_attempts,
                error,
                outcome,
            )
            return outcome
        log.error("gave up recording failure of job %s; its lease will expire", job.id)
        return "lost"
