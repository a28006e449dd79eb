"""The worker: N asyncio slots fed from one queue.

One fetch loop owns all traffic for taking work: it acknowledges finished jobs and reserves
as many new ones as there are free slots in the same script call, and when nothing is
ready it blocks in BLPOP on a connection of its own (never one of the shared pool) until
a producer, a finished job, a retry timer or a stop wakes it. A heartbeat task renews
leases, reloads live settings and reports to the worker registry.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sluice.errors import NonRetryableError
from sluice.queue.job import Job, now_ms
from sluice.queue.queue import DEFAULT_LEASE_MS, Completion, Finished, Queue, Reservation
from sluice.worker import registry
from sluice.worker.utilization import UtilizationMeter

Handler = Callable[[Job], Awaitable[Any]]
log = logging.getLogger("sluice.worker")
# The recorded error of a job whose handler was cancelled at shutdown: whatever the turn
# was sending may still land (see sluice.chatwoot.client.may_still_land).
HANDED_BACK_MID_TURN = "handed back mid-turn at shutdown"
job_log = logging.getLogger("sluice.jobs")

# Anything Redis may answer while unreachable, restarting or failing over (READONLY): the
# worker backs off and carries on rather than dying with jobs in hand.
REDIS_DOWN = (RedisError, RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def backoff_ms(attempt: int, base_ms: int, cap_ms: int) -> int:
    """Exponential backoff with "equal jitter": half fixed, half random, so retries of
    many conversations spread out but never retry sooner than half the nominal delay."""
    nominal = min(cap_ms, base_ms * 2 ** max(0, attempt - 1))
    return int(nominal / 2 + random.uniform(0, nominal / 2))


class Worker:
    """Runs ``handler`` for the jobs of ``queue`` on ``concurrency`` slots.

    ``rate_limit`` is the global job starts per second shared by every worker of the queue
    (0 = unlimited); a live value set with :meth:`Queue.set_rate_limit` wins, and so does a
    live concurrency set with :meth:`Queue.set_concurrency`.
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
        self.idle_poll_s = idle_poll_s
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.handle_signals = handle_signals
        self.batch_size = batch_size
        # Reserved jobs kept ready for the next free slot, so a slot never waits a round
        # trip for work. Only without a rate limit: a buffered job would start later than
        # its reservation, which is what the limiter counts.
        self.prefetch = concurrency if prefetch is None else prefetch
        self._buffer: collections.deque[Job] = collections.deque()
        self._live_rate_limit: int | None = None

        self.processed = 0
        self.failed = 0
        self.utilization = 0.0
        self.throughput = 0.0
        self._running: dict[str, tuple[Job, asyncio.Task[None]]] = {}
        self._done: list[Completion] = []
        self._changed = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._meter = UtilizationMeter()
        self._started_at = time.time()
        self._blocker: aioredis.Redis | None = None
        self._blpop: asyncio.Task[Any] | None = None
        self._heartbeat_done = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Work until :meth:`stop`, SIGTERM or SIGINT; then shut down gracefully."""
        self._stopped.clear()
        self._blocker = self.queue.blocking_client(read_timeout_s=self.idle_poll_s + 5)
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if self.handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.request_stop)
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name=f"heartbeat {self.id}")
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
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            for sig in signals:
                loop.remove_signal_handler(sig)
            await self._close_blocker()
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

    async def wait_heartbeat(self) -> None:
        """Wait for the next successful heartbeat (registry written, leases renewed)."""
        self._heartbeat_done.clear()
        await self._heartbeat_done.wait()

    # ------------------------------------------------------------------ fetching

    async def _fetch_loop(self) -> None:
        failures = 0
        while not self._stopping:
            done: list[Completion] = []
            try:
                if self._done and self._running:
                    # Let slots whose replies are already in finish too: one exchange then
                    # acknowledges them all and refills every freed slot (one loop turn).
                    await asyncio.sleep(0)
                self._start_buffered()
                free = self.concurrency - len(self._running)
                room = free + self._prefetch_room()
                done = self._take_done()
                if room <= 0 and not done:
                    await self._wait_changed()
                    continue
                reservation = await self._exchange(done, max(0, room))
                done = []
                failures = 0
                self._buffer.extend(reservation.jobs)
                self._start_buffered()
                if reservation.jobs or self._done:
                    continue
                await self._idle(reservation)
            except REDIS_DOWN as exc:
                # Unreachable, restarting, failing over (READONLY), ...: keep what is not
                # acknowledged yet, back off, and carry on; never die with jobs in hand.
                self._done[:0] = done
                failures += 1
                # Capped at 1 s so work resumes within about a second of Redis returning.
                delay = min(1.0, 0.1 * 2 ** min(failures, 4))
                log.warning("redis unavailable (%s); retrying in %.1f s", exc, delay)
                await self._close_blocker()
                self._blocker = self.queue.blocking_client(read_timeout_s=self.idle_poll_s + 5)
                await self._sleep_unless_changed(delay)
        await self._flush_done()

    def _prefetch_room(self) -> int:
        limited = self._live_rate_limit if self._live_rate_limit is not None else self.rate_limit
        if limited or self._stopping:
            return 0
        return max(0, self.prefetch - len(self._buffer))

    def _start_buffered(self) -> None:
        """Start buffered jobs on free slots (no round trip); called when a slot frees."""
        while self._buffer and len(self._running) < self.concurrency and not self._stopping:
            job = self._buffer.popleft()
            if job.hops.get("reserved", 0) < now_ms() - 1:
                job.mark("started")  # waited in the buffer: queue wait counts until now
            self._start(job)

    async def _exchange(self, done: list[Completion], want: int) -> Reservation:
        if done:
            lost, reservation, finished = await self.queue.complete(
                done,
                reserve=want,
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
            want,
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
            await self._sleep_unless_changed(timeout)
            return
        timeout = self.idle_poll_s
        if reservation.retry_after_ms:
            timeout = min(timeout, reservation.retry_after_ms / 1000)
        await self._wait_for_wake(timeout)

    async def _wait_for_wake(self, block_s: float) -> None:
        """BLPOP a wake token on the dedicated connection, or return early when a job of
        ours finishes (its ack must go out now), the worker stops, or ``block_s`` passes.

        The BLPOP outlives a wait that ended for another reason (cancelling a blocked read
        would break its connection); a token it received meanwhile counts as a wake-up at
        the next wait, so none is lost."""
        assert self._blocker is not None
        if self._blpop is not None and self._blpop.done():
            self._consume_blpop()
            return
        if self._blpop is None:
            self._blpop = asyncio.ensure_future(
                self._blocker.blpop([self.queue.keys.wake], timeout=max(0.01, block_s))
            )
        changed = asyncio.create_task(self._changed.wait())
        try:
            await asyncio.wait(
                {self._blpop, changed}, timeout=block_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            changed.cancel()
        self._changed.clear()
        if self._blpop.done():
            self._consume_blpop()

    def _consume_blpop(self) -> None:
        blpop, self._blpop = self._blpop, None
        if blpop is not None and not blpop.cancelled() and (exc := blpop.exception()):
            if isinstance(exc, REDIS_DOWN):
                raise exc
            log.error("wake-up read failed: %r", exc)

    async def _sleep_unless_changed(self, at_most_s: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), at_most_s)
        self._changed.clear()

    async def _wait_changed(self) -> None:
        await self._changed.wait()
        self._changed.clear()

    def _take_done(self) -> list[Completion]:
        done, self._done = self._done, []
        return done

    async def _flush_done(self, within_s: float = 10.0) -> None:
        """Acknowledge what finished, retrying while Redis is unreachable, for at most
        ``within_s``: past that the leases expire and the jobs run again elsewhere (at least
        once), which beats a worker that never exits."""
        deadline = time.monotonic() + within_s
        attempt = 0
        while self._done and time.monotonic() < deadline:
            done = self._take_done()
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await self._exchange(done, 0)
            except (*REDIS_DOWN, TimeoutError) as exc:
                self._done[:0] = done
                log.warning("cannot acknowledge %d jobs yet (%r)", len(done), exc)
                attempt += 1
                await asyncio.sleep(min(1.0, 0.1 * 2**attempt))
        if self._done:
            log.error("gave up acknowledging %d jobs; their leases will expire", len(self._done))
            self._done.clear()

    # ------------------------------------------------------------------ running jobs

    def _start(self, job: Job) -> None:
        self._meter.started(job.id)
        task = asyncio.create_task(self._run(job), name=f"job {job.id}")
        self._running[job.id] = (job, task)

    async def _run(self, job: Job) -> None:
        try:
            await self.handler(job)
        except asyncio.CancelledError:
            self._meter.finished(job.id)
            raise
        except Exception as exc:  # the handler's failure is the job's outcome, not ours
            self._meter.finished(job.id)
            self.failed += 1
            retryable = not isinstance(exc, NonRetryableError)
            error = f"{type(exc).__name__}: {exc}"
            await self._record_failure(job, error, retryable)
        else:
            self._meter.finished(job.id)
            self.processed += 1
            for member in job.members:  # one turn answered them all: each keeps its hops
                marks = job.marks if member is job else {**member.marks, **job.marks}
                self._done.append(Completion(member.id, member.token, marks))
        finally:
            self._running.pop(job.id, None)
            self._start_buffered()
            self._changed.set()

    async def _record_failure(self, job: Job, error: str, retryable: bool) -> None:
        delay = backoff_ms(job.attempt, self.retry_base_ms, self.retry_max_ms)
        for attempt in range(20):
            try:
                outcome = await self.queue.fail(job, error, backoff_ms=delay, retryable=retryable)
            except REDIS_DOWN as exc:
                log.warning("cannot record failure of job %s yet (%s)", job.id, exc)
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
            return
        log.error("gave up recording failure of job %s; its lease will expire", job.id)

    async def _finish_or_release(self) -> None:
        """Give running jobs the grace period, acknowledging as they finish; hand the rest
        back to their lanes without an attempt penalty."""
        deadline = time.monotonic() + self.shutdown_grace_s
        buffered = list(self._buffer)
        self._buffer.clear()
        if buffered:
            try:
                await self.queue.release(buffered)
            except REDIS_DOWN as exc:
                log.error("could not hand back %d buffered jobs (%s)", len(buffered), exc)
        while self._running and (left := deadline - time.monotonic()) > 0:
            tasks = [task for _, task in self._running.values()]
            await asyncio.wait(tasks, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            await self._flush_done()
        leftovers = [job for job, _ in self._running.values()]
        tasks = [task for _, task in self._running.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=5.0)
            if stuck:
                log.error("%d handlers ignored cancellation; leaving them", len(stuck))
        await self._flush_done()
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

    async def _beat(self) -> None:
        jobs = [job for job, _ in self._running.values()] + list(self._buffer)
        lost = await self.queue.extend(jobs, self.lease_ms)
        if lost and self._buffer:
            gone = set(lost)
            self._buffer = collections.deque(j for j in self._buffer if j.id not in gone)
        for job_id in lost:
            entry = self._running.get(job_id)
            if entry is not None:
                log.warning("lease of job %s was lost; another worker owns it now", job_id)
                entry[1].cancel()
        live = await self.queue.live_settings()
        self._live_rate_limit = live["rate_limit"]
        wanted = live["concurrency"] or self.configured_concurrency
        if wanted != self.concurrency:
            log.info("concurrency %d -> %d (live setting)", self.concurrency, wanted)
            self.concurrency = wanted
            self._changed.set()
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

    async def _close_blocker(self) -> None:
        if self._blpop is not None and not self._blpop.done():
            self._blpop.cancel()
            with contextlib.suppress(asyncio.CancelledError, *REDIS_DOWN):
                await self._blpop
        self._blpop = None
        if self._blocker is not None:
            with contextlib.suppress(*REDIS_DOWN):
                await self._blocker.aclose()
                await self._blocker.connection_pool.disconnect()
            self._blocker = None


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
