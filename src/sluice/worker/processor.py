"""Running turns in the worker's slots.

A slot is an asyncio task that runs the handler for one turn (a job and the members of its
batch) under the turn's lease. The fetch loop hands the processor the jobs it reserved to
start now; the processor itself starts the prefetched ones whenever a slot frees, without a
round trip (that is what the buffer is for). When the handler returns, the processor leaves
what happened where it belongs:

- a completion in ``slots.done``, which the fetch loop acknowledges with its next exchange
  (together with every other slot that finished meanwhile);
- a failure straight to Redis through the retry policy (:mod:`sluice.worker.retry`);
- nothing at all for a run whose lease was lost (Redis recovers the job as it would a
  crashed worker's) or that was cancelled at shutdown (:mod:`sluice.worker.shutdown` hands
  it back).

This is the per-job path: no work here that a job does not need.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sluice import tracing
from sluice.broker.meter import BrokerMeter
from sluice.errors import LeaseLostError
from sluice.queue.job import Job, now_ms
from sluice.queue.lease import Lease
from sluice.queue.queue import Completion
from sluice.tracing import messaging
from sluice.worker.retry import RetryPolicy
from sluice.worker.slots import Run, Slots
from sluice.worker.types import Handler
from sluice.worker.utilization import UtilizationMeter

log = logging.getLogger("sluice.worker")


class Processor:
    """Starts turns on free slots and records how each one ended."""

    def __init__(
        self, slots: Slots, handler: Handler, retry: RetryPolicy, *, prefetch_warmup: int
    ) -> None:
        self.handler = handler
        self.processed = 0
        self.failed = 0
        self.meter = UtilizationMeter()
        # Handler durations (EWMA, s): prefetch only pays for short handlers; for long ones
        # it would only hold jobs back from other workers (see Fetcher._prefetch_room).
        self.handler_s = 0.0
        self.runs_to_warm_up = prefetch_warmup
        # Broker calls for the adaptive controller (sluice.broker.meter): a handler that
        # counts its own broker calls (the reply pipeline) brings its meter; for any other
        # the handler is the broker, and each run is a call.
        own = getattr(handler, "broker_meter", None)
        self.broker_meter: BrokerMeter = own if isinstance(own, BrokerMeter) else BrokerMeter()
        self._meter_runs = not isinstance(own, BrokerMeter)
        self._slots = slots
        self._retry = retry

    def start(self, job: Job, lease: Lease) -> None:
        """Run ``job`` on a slot of its own under ``lease``."""
        job.lease = lease
        for member in job.members:
            member.lease = lease
        run = Run(job, lease)
        key = (job.id, job.token)
        self.meter.started(key)
        run.task = asyncio.create_task(self._run(run), name=f"job {job.id}")
        self._slots.running[key] = run

    def start_buffered(self) -> None:
        """Start buffered jobs on free slots (no round trip); called when a slot frees."""
        slots = self._slots
        while (
            slots.buffer
            and len(slots.running) < slots.concurrency
            and not slots.stopping
            and not slots.paused
        ):
            entry, expired = slots.buffer.pop_next()
            if expired:
                slots.hand_back.extend(e.job for e in expired)
            if entry is None:
                break
            job = entry.job
            if job.hops.get("reserved", 0) < now_ms() - 1:
                job.mark("started")  # waited in the buffer: queue wait counts until now
            for member in job.members:  # its attempt is charged now (sent with the next call)
                member.attempt += 1
            slots.started[job.id, job.token] = (job, time.monotonic())
            self.start(job, entry.lease)
        if slots.hand_back:
            slots.changed.set()

    def lose(self, run: Run, reason: str) -> None:
        """Cancel a run whose lease is gone: another runner may own its job now."""
        if run.lease.lost_reason is None:
            log.warning("job %s: %s; cancelling its run", run.job.id, reason)
        run.lease.lose(reason)
        if run.task is not None and not run.task.done():
            run.task.cancel()

    async def _run(self, run: Run) -> None:
        job = run.job
        slots = self._slots
        meter_key = (job.id, job.token)
        # The turn's process span (docs/tracing.md), current for the handler; none when off.
        span = messaging.start_process(job, self._retry.queue.name) if tracing.enabled else None
        outcome, error = "completed", None
        try:
            await self.handler(job)
        except asyncio.CancelledError:
            self.meter.finished(meter_key)
            outcome = "lost" if run.lease.lost_reason is not None else "handed_back"
            if run.lease.lost_reason is None:
                raise  # shutdown: the worker hands the job back
        except LeaseLostError as exc:
            self.meter.finished(meter_key)
            run.lease.lose(str(exc))
            outcome = "lost"
            log.warning("job %s stopped before an effect: %s", job.id, exc)
        except Exception as exc:  # the handler's failure is the job's outcome, not ours
            self.meter.finished(meter_key)
            if self._meter_runs:
                self.broker_meter.record(time.monotonic() - run.started_at, exc)
            self.failed += 1
            slots.started.pop((job.id, job.token), None)  # fail.lua charges it
            outcome, error = "lost", exc
            if not run.lease.lost:
                outcome = await self._retry.record_failure(job, exc)
        else:
            self.meter.finished(meter_key)
            if self._meter_runs:
                self.broker_meter.record(time.monotonic() - run.started_at)
            self.processed += 1
            slots.started.pop((job.id, job.token), None)  # charged with its completion
            for member in job.members:  # one turn answered them all: each keeps its hops
                marks = job.marks if member is job else {**member.marks, **job.marks}
                notes = job.notes if member is job else {**member.notes, **job.notes}
                slots.done.append(Completion(member.id, member.token, marks, notes))
        finally:
            if span is not None:
                messaging.end_process(span, outcome, error)
            took = time.monotonic() - run.started_at
            self.handler_s = 0.8 * self.handler_s + 0.2 * took
            self.runs_to_warm_up -= 1
            if slots.running.get((job.id, job.token)) is run:
                del slots.running[(job.id, job.token)]
            self.start_buffered()
            slots.changed.set()
