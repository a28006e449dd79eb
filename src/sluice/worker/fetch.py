"""Taking work: the one loop that talks to Redis about which jobs this worker holds.

Each turn of the loop sends one *exchange*: it acknowledges the turns that finished, charges
the prefetched ones that started, and reserves as many new jobs as there are free slots (plus
room in the prefetch buffer), all in the same script call. The jobs that come back start on
a slot (:mod:`sluice.worker.processor`) or wait in the buffer (:mod:`sluice.worker.prefetch`);
when nothing came back and nothing is left to acknowledge, the loop waits for a reason to
try again (:mod:`sluice.worker.wake`).

An exchange whose answer was lost (a Redis error, a timeout) is kept and re-sent as it was,
same request id, before anything else: Redis answers it from the first call's record, so the
worker always learns what was leased to it and never acts twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from sluice.queue.job import Job
from sluice.queue.lease import Lease, local_deadline
from sluice.queue.queue import Completion, Finished, Queue, Reservation, new_request_id
from sluice.worker.processor import Processor
from sluice.worker.slots import Slots
from sluice.worker.types import REDIS_DOWN
from sluice.worker.wake import Waker

log = logging.getLogger("sluice.worker")
job_log = logging.getLogger("sluice.jobs")

# A prefetched job's attempt is charged when it starts, but the worker tells Redis only
# once it has run this long (with its next call, the heartbeat at the latest), or with its
# acknowledgement if it finishes first: a short job's charge then costs nothing extra.
# Until then a crash of the worker loses the charge (the job is retried as if it had not
# started), so this is also the most a poison job can run uncharged per crash.
CHARGE_AFTER_S = 0.1


@dataclass(slots=True)
class Exchange:
    """One call to Redis that acknowledges, charges starts and reserves. Kept until it is
    answered: after a Redis error it is re-sent as it was, same request id, so a call that
    ran but whose reply was lost is answered from its record instead of acting twice."""

    request_id: str
    done: list[Completion]
    started: list[Job]
    want: int
    prefetch: int


class Fetcher:
    """Runs the fetch loop until the worker stops, then acknowledges what is left."""

    def __init__(
        self,
        queue: Queue,
        slots: Slots,
        processor: Processor,
        waker: Waker,
        *,
        worker_id: str,
        lease_ms: int,
        rate_limit: int,
        batch_size: int,
        prefetch: int,
        idle_poll_s: float,
    ) -> None:
        self.queue = queue
        self._slots = slots
        self._processor = processor
        self._waker = waker
        self._worker_id = worker_id
        self._lease_ms = lease_ms
        self._rate_limit = rate_limit
        self._batch_size = batch_size
        self._prefetch = prefetch
        self._idle_poll_s = idle_poll_s
        self._pending: Exchange | None = None

    async def run(self) -> None:
        """Exchange with Redis until the worker stops; back off while Redis is down."""
        slots = self._slots
        failures = 0
        while not slots.stopping:
            call: Exchange | None = None
            try:
                if slots.done and slots.running:
                    # Let slots whose replies are already in finish too: one exchange then
                    # acknowledges them all and refills every freed slot (one loop turn).
                    await asyncio.sleep(0)
                self._processor.start_buffered()
                if slots.hand_back:
                    await self.hand_back_revoked()
                if slots.unconfirmed:
                    await self._confirm()
                call = self._pending or self._next_exchange()
                if call is None:
                    await self._waker.wait_changed()
                    continue
                self._pending = call
                sent_at = time.monotonic()
                reservation = await self._exchange(call)
                self._pending = None
                failures = 0
                self._take(reservation, sent_at)
                if reservation.jobs or slots.done:
                    continue
                await self._idle(reservation)
            except REDIS_DOWN as exc:
                # Unreachable, restarting, failing over (READONLY), ...: keep the unanswered
                # call to re-send as it was, back off, and carry on; never die with jobs in
                # hand.
                failures += 1
                # Capped at 1 s so work resumes within about a second of Redis returning.
                delay = min(1.0, 0.1 * 2 ** min(failures, 4))
                log.warning("redis unavailable (%s); retrying in %.1f s", exc, delay)
                await self._waker.reopen()
                await self._waker.sleep_unless_changed(delay)
        await self.flush_done()

    def _next_exchange(self) -> Exchange | None:
        slots = self._slots
        free = max(0, slots.concurrency - len(slots.running))
        prefetch = self._prefetch_room()
        done, slots.done = slots.done, []
        started = slots.take_started(CHARGE_AFTER_S)
        if free + prefetch <= 0 and not done and not started:
            return None
        return Exchange(new_request_id(), done, started, free, prefetch)

    def _prefetch_room(self) -> int:
        """How many jobs to reserve into the buffer: none under a rate limit, while paused
        or stopping, or while handlers are not known to be short (see the Worker's docstring)."""
        slots = self._slots
        live = slots.live_rate_limit
        limited = live if live is not None else self._rate_limit
        if limited or slots.stopping or slots.paused:
            return 0
        processor = self._processor
        if processor.runs_to_warm_up > 0 or processor.handler_s * 2 > slots.buffer.hold_s:
            return 0
        return max(0, self._prefetch - len(slots.buffer))

    def _take(self, reservation: Reservation, sent_at: float) -> None:
        """Start the jobs reserved to start now; buffer the prefetched ones. A reservation
        whose call took more than half a lease to come back (the loop was blocked while it
        was being sent, Redis was slow) is renewed before anything starts: the local
        deadline counts from the send, so it would be nearly spent."""
        slots = self._slots
        slots.paused = reservation.status == "paused"
        deadline = local_deadline(sent_at, self._lease_ms)
        slow = deadline - time.monotonic() < self._lease_ms / 2000
        fencer = self.queue.fence_turn
        for job in reservation.jobs:
            lease = Lease(
                token=job.token,
                worker_id=self._worker_id,
                deadline=deadline,
                fencer=fencer,
                refs=[(m.id, m.token) for m in job.members],
            )
            if slow and not slots.stopping:
                slots.unconfirmed.append((job, lease))
                slots.changed.set()
            else:
                self._place(job, lease, sent_at)
        self._processor.start_buffered()

    def _place(self, job: Job, lease: Lease, reserved_at: float) -> None:
        slots = self._slots
        if job.prefetched:
            slots.buffer.add(job, lease, reserved_at)
        elif slots.stopping:
            slots.hand_back.append(job)
        else:
            self._processor.start(job, lease)

    async def _confirm(self) -> None:
        """Renew the leases of reservations that came back slowly (see :meth:`_take`),
        then start or buffer those still ours."""
        slots = self._slots
        if not slots.unconfirmed:
            return
        pending, slots.unconfirmed = slots.unconfirmed, []
        sent_at = time.monotonic()
        try:
            lost = set(await self.queue.extend([job for job, _ in pending], self._lease_ms))
        except BaseException:
            slots.unconfirmed[:0] = pending
            raise
        for job, lease in pending:
            if any(m.id in lost for m in job.members):
                log.warning("job %s: its lease ran out before the reservation arrived", job.id)
                continue
            lease.extended(sent_at, self._lease_ms)
            self._place(job, lease, sent_at)
        self._processor.start_buffered()

    async def hand_back_revoked(self) -> None:
        """Release buffered jobs that may not start (held too long, paused, drained,
        cancelled, rate-limited) to the head of their lanes, with their deadline and
        without an attempt charged. If Redis cannot be reached their leases expire and
        they come back the same way."""
        slots = self._slots
        jobs, slots.hand_back = slots.hand_back, []
        jobs = [job for job in jobs if not job.lease or not job.lease.lost]
        if jobs:
            await self.queue.release(jobs)

    async def _exchange(self, call: Exchange) -> Reservation:
        if call.done or call.started:
            lost, reservation, finished = await self.queue.complete(
                call.done,
                started=call.started,
                reserve=call.want,
                prefetch=call.prefetch,
                request_id=call.request_id,
                worker_id=self._worker_id,
                lease_ms=self._lease_ms,
                rate_limit=self._rate_limit,
                batch=self._batch_size,
                report=job_log.isEnabledFor(logging.INFO),
            )
            if lost:
                log.warning("completions rejected, leases had expired: %s", lost)
            if finished and job_log.isEnabledFor(logging.INFO):
                for f in finished:
                    _log_finished(f)
            return reservation
        return await self.queue.reserve(
            call.want,
            prefetch=call.prefetch,
            request_id=call.request_id,
            worker_id=self._worker_id,
            lease_ms=self._lease_ms,
            rate_limit=self._rate_limit,
            batch=self._batch_size,
        )

    async def _idle(self, reservation: Reservation) -> None:
        """Nothing was started: wait for the event that can change that."""
        free = self._slots.concurrency - len(self._slots.running)
        if reservation.status == "rate" or free <= 0:
            # A wake token would not help before the rate window frees a start.
            timeout = reservation.retry_after_ms / 1000 if reservation.status == "rate" else None
            await self._waker.sleep_unless_changed(timeout)
            return
        timeout = self._idle_poll_s
        if reservation.retry_after_ms:
            timeout = min(timeout, reservation.retry_after_ms / 1000)
        await self._waker.wait_for_wake(timeout)

    async def flush_done(self, within_s: float = 10.0) -> None:
        """Acknowledge what finished, retrying while Redis is unreachable, for at most
        ``within_s``: past that the leases expire and the jobs run again elsewhere (at least
        once), which beats a worker that never exits. An unanswered exchange goes first,
        as it was."""
        slots = self._slots
        deadline = time.monotonic() + within_s
        attempt = 0
        while (self._pending or slots.done or slots.started) and time.monotonic() < deadline:
            call = self._pending or Exchange(
                new_request_id(), slots.done, slots.take_started(), want=0, prefetch=0
            )
            self._pending, slots.done = call, []
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    reservation = await self._exchange(call)
                self._pending = None
                slots.hand_back.extend(reservation.jobs)  # a replayed call's jobs: not now
            except (*REDIS_DOWN, TimeoutError) as exc:
                log.warning("cannot acknowledge %d jobs yet (%r)", len(call.done), exc)
                attempt += 1
                await asyncio.sleep(min(1.0, 0.1 * 2**attempt))
        if self._pending or slots.done:
            log.error("gave up acknowledging jobs; their leases will expire")
            self._pending, slots.done, slots.started = None, [], {}


def _log_finished(f: Finished) -> None:
    """One structured line per finished message: its durations and SLA verdict."""
    job_log.info(
        "job %s (%s) completed: wait %d ms, processing %d ms, SLA %d ms [%s]",
        f.job_id,
        f.key,
        f.queue_wait_ms,
        f.processing_ms,
        f.sla_ms,
        f.verdict,
        extra={
            "fields": {
                "event": "job_completed",
                "job_id": f.job_id,
                "conversation": f.key,
                "queue_wait_ms": f.queue_wait_ms,
                "processing_ms": f.processing_ms,
                "sla_ms": f.sla_ms,
                "sla_verdict": f.verdict,
            }
        },
    )
