"""The worker: N asyncio slots fed from one queue.

One fetch loop owns all traffic for taking work: it acknowledges finished jobs and reserves
as many new ones as there are free slots in the same script call, and when nothing is
ready it blocks in BLPOP on a connection of its own (never one of the shared pool) until
a producer, a finished job, a retry timer or a stop wakes it. A heartbeat task renews
leases, reloads live settings and reports to the worker registry.

Each run holds a lease (:mod:`sluice.queue.lease`) that is a fence: when it passes without
a successful renewal the run is cancelled and its effects are refused, because another
runner may own the job by then. Runs are keyed by (job id, token), so a stale run of a job
can never touch the entry of a newer run of the same job. An exchange whose answer was lost
is re-sent with the same request id, which Redis answers from the first one's record: the
worker always learns what was leased to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field

from sluice.errors import LeaseLostError
from sluice.queue.job import Job, now_ms
from sluice.queue.lease import Lease, local_deadline
from sluice.queue.queue import (
    DEFAULT_LEASE_MS,
    Completion,
    Finished,
    Queue,
    Reservation,
    new_request_id,
)
from sluice.worker import control, registry
from sluice.worker.prefetch import DEFAULT_HOLD_S, PrefetchBuffer
from sluice.worker.retry import RetryPolicy
from sluice.worker.retry import backoff_ms as backoff_ms  # re-exported
from sluice.worker.types import REDIS_DOWN
from sluice.worker.types import Handler as Handler  # re-exported: imported from here
from sluice.worker.utilization import UtilizationMeter
from sluice.worker.wake import Waker

log = logging.getLogger("sluice.worker")
# The recorded error of a job whose handler was cancelled at shutdown: whatever the turn
# was sending may still land (see sluice.chatwoot.client.may_still_land).
HANDED_BACK_MID_TURN = "handed back mid-turn at shutdown"
job_log = logging.getLogger("sluice.jobs")


RunKey = tuple[str, str]  # (job id, reservation token)
# A prefetched job's attempt is charged when it starts, but the worker tells Redis only
# once it has run this long (with its next call, the heartbeat at the latest), or with its
# acknowledgement if it finishes first: a short job's charge then costs nothing extra.
# Until then a crash of the worker loses the charge (the job is retried as if it had not
# started), so this is also the most a poison job can run uncharged per crash.
CHARGE_AFTER_S = 0.1
CONTROL_SUBSCRIBE_WAIT_S = 2.0


@dataclass(eq=False, slots=True)
class _Run:
    """One run of a job (a turn) on a slot."""

    job: Job
    lease: Lease
    task: asyncio.Task[None] | None = None
    started_at: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Exchange:
    """One call to Redis that acknowledges, charges starts and reserves. Kept until it is
    answered: after a Redis error it is re-sent as it was, same request id, so a call that
    ran but whose reply was lost is answered from its record instead of acting twice."""

    request_id: str
    done: list[Completion]
    started: list[Job]
    want: int
    prefetch: int


class Worker:
    """Runs ``handler`` for the jobs of ``queue`` on ``concurrency`` slots.

    ``rate_limit`` is the global job starts per second shared by every worker of the queue
    (0 = unlimited); a live value set with :meth:`Queue.set_rate_limit` wins, and so does a
    live concurrency set with :meth:`Queue.set_concurrency`. ``prefetch`` jobs (default:
    ``concurrency``) may wait in a buffer for a free slot when there is no rate limit and
    handlers are short: once ``prefetch_warmup`` runs have finished in under half of
    ``prefetch_hold_s`` on average; ``prefetch_hold_s`` bounds how long a job may wait there
    (:mod:`sluice.worker.prefetch`). For long handlers the round trip a buffer saves is
    noise, and a buffer would only hold jobs back from other workers and from a pause.
    """

    def __init__(
        self,
        queue: Queue,
        handler: Handler,
        *,
        concurrency: int = 10,
        rate_limit: int = 0,
        lease_ms: int = DEFAULT_LEASE_MS,
        heartbeat_ms: int = 1_000,
        shutdown_grace_s: float = 10.0,
        retry_base_ms: int = 1_000,
        retry_max_ms: int = 60_000,
        idle_poll_s: float = 1.0,
        worker_id: str | None = None,
        handle_signals: bool = True,
        batch_size: int = 1,
        prefetch: int | None = None,
        prefetch_hold_s: float = DEFAULT_HOLD_S,
        prefetch_warmup: int = 20,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if rate_limit < 0:
            raise ValueError(f"rate_limit must not be negative, got {rate_limit}")
        if heartbeat_ms * 2 > lease_ms:
            raise ValueError(
                f"heartbeat ({heartbeat_ms} ms) must be at most half the lease ({lease_ms} ms)"
            )
        self.queue = queue
        self.handler = handler
        self.configured_concurrency = concurrency
        self.concurrency = concurrency
        self.rate_limit = rate_limit
        self.lease_ms = lease_ms
        self.heartbeat_ms = heartbeat_ms
        self.shutdown_grace_s = shutdown_grace_s
        self.retry_base_ms = retry_base_ms
        self.retry_max_ms = retry_max_ms
        self._retry = RetryPolicy(queue, base_ms=retry_base_ms, max_ms=retry_max_ms)
        self.idle_poll_s = idle_poll_s
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.handle_signals = handle_signals
        self.batch_size = batch_size
        self.prefetch = concurrency if prefetch is None else prefetch
        self._buffer = PrefetchBuffer(prefetch_hold_s)
        self._live_rate_limit: int | None = None
        self._paused = False  # as last heard from Redis: no buffered job starts meanwhile
        # Handler durations (EWMA, s): prefetch only pays for short handlers; for long ones
        # it would only hold jobs back from other workers.
        self._handler_s = 0.0
        self._runs_to_warm_up = prefetch_warmup

        self.processed = 0
        self.failed = 0
        self.utilization = 0.0
        self.throughput = 0.0
        self._running: dict[RunKey, _Run] = {}
        self._done: list[Completion] = []
        # Prefetched jobs that started (and when), their attempts not charged yet: see
        # CHARGE_AFTER_S. One that finishes first leaves it: its acknowledgement carries
        # the charge (complete.lua).
        self._started: dict[RunKey, tuple[Job, float]] = {}
        self._hand_back: list[Job] = []  # buffered jobs that may not start: release them
        self._pending: _Exchange | None = None
        self._unconfirmed: list[tuple[Job, Lease]] = []  # leases to renew before a start
        self._changed = asyncio.Event()
        self._waker = Waker(queue, self._changed, idle_poll_s=idle_poll_s)
        self._stopping = False
        self._stopped = asyncio.Event()
        self._meter = UtilizationMeter()
        self._started_at = time.time()
        self._heartbeat_done = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Work until :meth:`stop`, SIGTERM or SIGINT; then shut down gracefully."""
        self._stopped.clear()
        self._waker.open()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if self.handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.request_stop)
        subscribed = asyncio.Event()
        helpers = [
            asyncio.create_task(self._heartbeat_loop(), name=f"heartbeat {self.id}"),
            asyncio.create_task(self._watchdog_loop(), name=f"leases {self.id}"),
            asyncio.create_task(control.listen(self.queue, self._on_control, subscribed)),
        ]
        # Hear pause/drain/cancel before holding any job; a Redis that does not answer yet
        # must not keep the worker from starting (the fetch loop copes with that).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(subscribed.wait(), CONTROL_SUBSCRIBE_WAIT_S)
        log.info(
            "worker %s started: %d slots, rate limit %s",
            self.id,
            self.concurrency,
            self.rate_limit or "unlimited",
        )
        try:
            await self._fetch_loop()
            await self._finish_or_release()
        finally:
            for helper in helpers:
                helper.cancel()
            for helper in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
            for sig in signals:
                loop.remove_signal_handler(sig)
            await self._waker.close()
            with contextlib.suppress(*REDIS_DOWN):
                await registry.withdraw(self.queue.redis, self.queue.keys, self.id)
            self._stopped.set()
            log.info(
                "worker %s stopped: %d processed, %d failed", self.id, self.processed, self.failed
            )

    def request_stop(self) -> None:
        """Stop taking work; running jobs get the grace period to finish."""
        if not self._stopping:
            log.info("worker %s stopping", self.id)
        self._stopping = True
        self._changed.set()

    async def stop(self) -> None:
        """Request a stop and wait until the worker has shut down."""
        self.request_stop()
        await self._stopped.wait()

    @property
    def busy(self) -> int:
        return len(self._running)

    @property
    def buffered(self) -> int:
        """Jobs reserved into the prefetch buffer, waiting for a slot."""
        return len(self._buffer)

    async def wait_heartbeat(self) -> None:
        """Wait for the next successful heartbeat (registry written, leases renewed)."""
        self._heartbeat_done.clear()
        await self._heartbeat_done.wait()

    # ------------------------------------------------------------------ fetching

    async def _fetch_loop(self) -> None:
        failures = 0
        while not self._stopping:
            call: _Exchange | None = None
            try:
                if self._done and self._running:
                    # Let slots whose replies are already in finish too: one exchange then
                    # acknowledges them all and refills every freed slot (one loop turn).
                    await asyncio.sleep(0)
                self._start_buffered()
                if self._hand_back:
                    await self._hand_back_revoked()
                if self._unconfirmed:
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
                if reservation.jobs or self._done:
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
        await self._flush_done()

    def _next_exchange(self) -> _Exchange | None:
        free = max(0, self.concurrency - len(self._running))
        prefetch = self._prefetch_room()
        done, self._done = self._done, []
        started = self._take_started(CHARGE_AFTER_S)
        if free + prefetch <= 0 and not done and not started:
            return None
        return _Exchange(new_request_id(), done, started, free, prefetch)

    def _take_started(self, running_for_s: float = 0.0) -> list[Job]:
        """The started prefetched jobs whose charge is due: those running for at least
        ``running_for_s`` (all by default)."""
        if not running_for_s:
            started, self._started = self._started, {}
            return [job for job, _ in started.values()]
        since = time.monotonic() - running_for_s
        due = [key for key, (_, began) in self._started.items() if began <= since]
        return [self._started.pop(key)[0] for key in due]

    def _prefetch_room(self) -> int:
        limited = self._live_rate_limit if self._live_rate_limit is not None else self.rate_limit
        if limited or self._stopping or self._paused:
            return 0
        if self._runs_to_warm_up > 0 or self._handler_s * 2 > self._buffer.hold_s:
            return 0
        return max(0, self.prefetch - len(self._buffer))

    def _take(self, reservation: Reservation, sent_at: float) -> None:
        """Start the jobs reserved to start now; buffer the prefetched ones. A reservation
        whose call took more than half a lease to come back (the loop was blocked while it
        was being sent, Redis was slow) is renewed before anything starts: the local
        deadline counts from the send, so it would be nearly spent."""
        self._paused = reservation.status == "paused"
        deadline = local_deadline(sent_at, self.lease_ms)
        slow = deadline - time.monotonic() < self.lease_ms / 2000
        fencer = self.queue.fence_turn
        for job in reservation.jobs:
            lease = Lease(
                token=job.token,
                worker_id=self.id,
                deadline=deadline,
                fencer=fencer,
                refs=[(m.id, m.token) for m in job.members],
            )
            if slow and not self._stopping:
                self._unconfirmed.append((job, lease))
                self._changed.set()
            else:
                self._place(job, lease, sent_at)
        self._start_buffered()

    def _place(self, job: Job, lease: Lease, reserved_at: float) -> None:
        if job.prefetched:
            self._buffer.add(job, lease, reserved_at)
        elif self._stopping:
            self._hand_back.append(job)
        else:
            self._start(job, lease)

    async def _confirm(self) -> None:
        """Renew the leases of reservations that came back slowly (see :meth:`_take`),
        then start or buffer those still ours."""
        if not self._unconfirmed:
            return
        pending, self._unconfirmed = self._unconfirmed, []
        sent_at = time.monotonic()
        try:
            lost = set(await self.queue.extend([job for job, _ in pending], self.lease_ms))
        except BaseException:
            self._unconfirmed[:0] = pending
            raise
        for job, lease in pending:
            if any(m.id in lost for m in job.members):
                log.warning("job %s: its lease ran out before the reservation arrived", job.id)
                continue
            lease.extended(sent_at, self.lease_ms)
            self._place(job, lease, sent_at)
        self._start_buffered()

    def _start_buffered(self) -> None:
        """Start buffered jobs on free slots (no round trip); called when a slot frees."""
        while (
            self._buffer
            and len(self._running) < self.concurrency
            and not self._stopping
            and not self._paused
        ):
            entry, expired = self._buffer.pop_next()
            if expired:
                self._hand_back.extend(e.job for e in expired)
            if entry is None:
                break
            job = entry.job
            if job.hops.get("reserved", 0) < now_ms() - 1:
                job.mark("started")  # waited in the buffer: queue wait counts until now
            for member in job.members:  # its attempt is charged now (sent with the next call)
                member.attempt += 1
            self._started[job.id, job.token] = (job, time.monotonic())
            self._start(job, entry.lease)
        if self._hand_back:
            self._changed.set()

    async def _hand_back_revoked(self) -> None:
        """Release buffered jobs that may not start (held too long, paused, drained,
        cancelled, rate-limited) to the head of their lanes, with their deadline and
        without an attempt charged. If Redis cannot be reached their leases expire and
        they come back the same way."""
        jobs, self._hand_back = self._hand_back, []
        jobs = [job for job in jobs if not job.lease or not job.lease.lost]
        if jobs:
            await self.queue.release(jobs)

    def _on_control(self, message: str) -> None:
        """A control message (see :mod:`sluice.worker.control`)."""
        if message in ("pause", "drain"):
            self._paused = self._paused or message == "pause"
            revoked = self._buffer.take_all()
        elif message.startswith("cancel:"):
            revoked = self._buffer.take_conversation(message.removeprefix("cancel:"))
        elif message == "rate":
            asyncio.get_running_loop().create_task(self._reload_live_settings())
            revoked = self._buffer.take_all()
        else:
            return
        self._hand_back.extend(e.job for e in revoked)
        self._changed.set()

    async def _exchange(self, call: _Exchange) -> Reservation:
        if call.done or call.started:
            lost, reservation, finished = await self.queue.complete(
                call.done,
                started=call.started,
                reserve=call.want,
                prefetch=call.prefetch,
                request_id=call.request_id,
                worker_id=self.id,
                lease_ms=self.lease_ms,
                rate_limit=self.rate_limit,
                batch=self.batch_size,
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
            worker_id=self.id,
            lease_ms=self.lease_ms,
            rate_limit=self.rate_limit,
            batch=self.batch_size,
        )

    async def _idle(self, reservation: Reservation) -> None:
        """Nothing was started: wait for the event that can change that."""
        free = self.concurrency - len(self._running)
        if reservation.status == "rate" or free <= 0:
            # A wake token would not help before the rate window frees a start.
            timeout = reservation.retry_after_ms / 1000 if reservation.status == "rate" else None
            await self._waker.sleep_unless_changed(timeout)
            return
        timeout = self.idle_poll_s
        if reservation.retry_after_ms:
            timeout = min(timeout, reservation.retry_after_ms / 1000)
        await self._waker.wait_for_wake(timeout)

    async def _flush_done(self, within_s: float = 10.0) -> None:
        """Acknowledge what finished, retrying while Redis is unreachable, for at most
        ``within_s``: past that the leases expire and the jobs run again elsewhere (at least
        once), which beats a worker that never exits. An unanswered exchange goes first,
        as it was."""
        deadline = time.monotonic() + within_s
        attempt = 0
        while (self._pending or self._done or self._started) and time.monotonic() < deadline:
            call = self._pending or _Exchange(
                new_request_id(), self._done, self._take_started(), want=0, prefetch=0
            )
            self._pending, self._done = call, []
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    reservation = await self._exchange(call)
                self._pending = None
                self._hand_back.extend(reservation.jobs)  # a replayed call's jobs: not now
            except (*REDIS_DOWN, TimeoutError) as exc:
                log.warning("cannot acknowledge %d jobs yet (%r)", len(call.done), exc)
                attempt += 1
                await asyncio.sleep(min(1.0, 0.1 * 2**attempt))
        if self._pending or self._done:
            log.error("gave up acknowledging jobs; their leases will expire")
            self._pending, self._done, self._started = None, [], {}

    # ------------------------------------------------------------------ running jobs

    def _start(self, job: Job, lease: Lease) -> None:
        job.lease = lease
        for member in job.members:
            member.lease = lease
        run = _Run(job, lease)
        key = (job.id, job.token)
        self._meter.started(key)
        run.task = asyncio.create_task(self._run(run), name=f"job {job.id}")
        self._running[key] = run

    async def _watchdog_loop(self) -> None:
        """Cancel every run whose local deadline passed without a renewal (Redis
        unreachable, the event loop blocked, a renewal refused): another runner may own the
        job now. One sweep every eighth of a lease (at most 250 ms) instead of a timer per
        job: the deadline already keeps a margin, and ``Job.guard`` checks the clock itself."""
        interval = min(0.25, self.lease_ms / 8000)
        while True:
            await asyncio.sleep(interval)
            for run in list(self._running.values()):
                if run.lease.lost_reason is None and run.lease.lost:
                    self._lose(run, "lease expired before the worker could renew it")

    def _lose(self, run: _Run, reason: str) -> None:
        if run.lease.lost_reason is None:
            log.warning("job %s: %s; cancelling its run", run.job.id, reason)
        run.lease.lose(reason)
        if run.task is not None and not run.task.done():
            run.task.cancel()

    async def _run(self, run: _Run) -> None:
        job = run.job
        meter_key = (job.id, job.token)
        try:
            await self.handler(job)
        except asyncio.CancelledError:
            self._meter.finished(meter_key)
            if run.lease.lost_reason is None:
                raise  # shutdown: the worker hands the job back
        except LeaseLostError as exc:
            self._meter.finished(meter_key)
            run.lease.lose(str(exc))
            log.warning("job %s stopped before an effect: %s", job.id, exc)
        except Exception as exc:  # the handler's failure is the job's outcome, not ours
            self._meter.finished(meter_key)
            self.failed += 1
            self._started.pop((job.id, job.token), None)  # fail.lua charges it
            if not run.lease.lost:
                await self._retry.record_failure(job, exc)
        else:
            self._meter.finished(meter_key)
            self.processed += 1
            self._started.pop((job.id, job.token), None)  # charged with its completion
            for member in job.members:  # one turn answered them all: each keeps its hops
                marks = job.marks if member is job else {**member.marks, **job.marks}
                self._done.append(Completion(member.id, member.token, marks))
        finally:
            took = time.monotonic() - run.started_at
            self._handler_s = 0.8 * self._handler_s + 0.2 * took
            self._runs_to_warm_up -= 1
            if self._running.get((job.id, job.token)) is run:
                del self._running[(job.id, job.token)]
            self._start_buffered()
            self._changed.set()

    async def _finish_or_release(self) -> None:
        """Give running jobs the grace period, acknowledging as they finish; hand the rest
        back to their lanes without an attempt penalty."""
        deadline = time.monotonic() + self.shutdown_grace_s
        self._hand_back.extend(e.job for e in self._buffer.take_all())
        self._hand_back.extend(job for job, _ in self._unconfirmed)
        self._unconfirmed.clear()
        try:
            await self._hand_back_revoked()
        except REDIS_DOWN as exc:
            log.error("could not hand back buffered jobs (%s)", exc)
        while self._running and (left := deadline - time.monotonic()) > 0:
            tasks = [run.task for run in self._running.values() if run.task is not None]
            await asyncio.wait(tasks, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            await self._flush_done()
        leftovers = [run.job for run in self._running.values() if not run.lease.lost]
        tasks = [run.task for run in self._running.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=5.0)
            if stuck:
                log.error("%d handlers ignored cancellation; leaving them", len(stuck))
        await self._flush_done()
        with contextlib.suppress(*REDIS_DOWN):
            await self._hand_back_revoked()  # jobs a replayed exchange returned
        if leftovers:
            try:
                async with asyncio.timeout(5.0):
                    released = await self.queue.release(leftovers, reason=HANDED_BACK_MID_TURN)
                log.warning("handed back %d unfinished jobs after the grace period", released)
            except (*REDIS_DOWN, TimeoutError) as exc:
                log.error(
                    "could not hand back %d jobs (%r); their leases will expire",
                    len(leftovers),
                    exc,
                )

    # ------------------------------------------------------------------ heartbeat

    async def _heartbeat_loop(self) -> None:
        interval = self.heartbeat_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self._beat()
                self._heartbeat_done.set()
            except REDIS_DOWN as exc:
                log.warning("heartbeat failed (%s)", exc)
            except Exception:
                log.exception("heartbeat failed")

    async def _renew_leases(self) -> None:
        """Extend the leases of every live run and buffered job; a run whose lease Redis no
        longer grants is cancelled, a buffered one forgotten. Charges starts not sent yet."""
        runs = [run for run in self._running.values() if not run.lease.lost]
        buffered = [entry for entry in self._buffer.entries() if not entry.lease.lost]
        started = self._take_started()
        sent_at = time.monotonic()
        try:
            lost = set(
                await self.queue.extend(
                    [run.job for run in runs] + [entry.job for entry in buffered],
                    self.lease_ms,
                    started=started,
                )
            )
        except BaseException:
            again = {(job.id, job.token): (job, sent_at) for job in started}
            self._started = again | self._started
            raise
        for entry in buffered:
            entry.lease.extended(sent_at, self.lease_ms)
        stale = self._buffer.take_stale()
        if stale:  # held too long behind fresher ones: back to their lanes
            self._hand_back.extend(e.job for e in stale)
            self._changed.set()
        for run in runs:
            if self._running.get((run.job.id, run.job.token)) is not run:
                continue  # finished meanwhile: its completion may have beaten the renewal
            if any(m.id in lost for m in run.job.members):
                self._lose(run, "Redis no longer grants the lease; another runner may own it")
            else:
                run.lease.extended(sent_at, self.lease_ms)
        if lost:
            self._buffer.forget(lost)

    async def _reload_live_settings(self) -> dict[str, int | None]:
        live = await self.queue.live_settings()
        self._live_rate_limit = live["rate_limit"]
        paused = await self.queue.is_paused()
        if paused and not self._paused:
            self._on_control("pause")  # the control message was missed: act on it now
        self._paused = paused
        wanted = live["concurrency"] or self.configured_concurrency
        if wanted != self.concurrency:
            log.info("concurrency %d -> %d (live setting)", self.concurrency, wanted)
            self.concurrency = wanted
            self._changed.set()
        return live

    async def _beat(self) -> None:
        await self._renew_leases()
        live = await self._reload_live_settings()
        sample = self._meter.sample(self.concurrency)
        self.utilization, self.throughput = sample.utilization, sample.throughput
        info = registry.WorkerInfo(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queue=self.queue.name,
            slots=self.concurrency,
            busy=len(self._running),
            utilization=round(self.utilization, 4),
            throughput=round(self.throughput, 3),
            processed=self.processed,
            failed=self.failed,
            rate_limit=live["rate_limit"] if live["rate_limit"] is not None else self.rate_limit,
            started_at=self._started_at,
            heartbeat_at=time.time(),
        )
        await registry.publish(
            self.queue.redis,
            self.queue.keys,
            info,
            ttl_ms=self.heartbeat_ms * 5,
            busy_ms=int(sample.busy_s * 1000) if self.queue.monitoring else None,
            capacity_ms=int(sample.capacity_s * 1000) if self.queue.monitoring else None,
        )


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
