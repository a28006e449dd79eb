"""The worker: N asyncio slots fed from one queue.

:class:`Worker` is what an application creates and runs. It owns no loop of its own; it
builds the parts, each with one job, starts them, and stops them in order:

- :mod:`~sluice.worker.fetch`: the fetch loop, the only traffic for taking work (it
  acknowledges finished jobs and reserves new ones in one call, and blocks on a connection
  of its own when nothing is ready, :mod:`~sluice.worker.wake`);
- :mod:`~sluice.worker.processor`: runs each turn on a slot and records how it ended
  (failures through :mod:`~sluice.worker.retry`);
- :mod:`~sluice.worker.heartbeat`: renews leases, cancels runs whose lease passed, reports
  to the registry;
- :mod:`~sluice.worker.control`: the queue's pause, drain, cancel and live settings;
- :mod:`~sluice.worker.shutdown`: what happens to the jobs in hand when the worker stops.

They share their state through :class:`~sluice.worker.slots.Slots` and run on one event
loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid

from sluice.control.share import ShareReader
from sluice.queue.queue import DEFAULT_LEASE_MS, Queue
from sluice.worker import control, registry
from sluice.worker.control import Controls
from sluice.worker.fetch import Fetcher
from sluice.worker.heartbeat import Heartbeat
from sluice.worker.prefetch import DEFAULT_HOLD_S, PrefetchBuffer
from sluice.worker.processor import Processor
from sluice.worker.retry import RetryPolicy
from sluice.worker.shutdown import finish_or_release
from sluice.worker.slots import Slots
from sluice.worker.types import REDIS_DOWN, Handler
from sluice.worker.wake import Waker

log = logging.getLogger("sluice.worker")

CONTROL_SUBSCRIBE_WAIT_S = 2.0


class Worker:
    """Runs ``handler`` for the jobs of ``queue`` on ``concurrency`` slots.

    ``rate_limit`` is the global job starts per second shared by every worker of the queue
    (0 = unlimited); a live value set with :meth:`Queue.set_rate_limit` wins, and so does a
    live concurrency set with :meth:`Queue.set_concurrency`. With ``adaptive`` the slots
    are this worker's share of the queue's adaptive target (docs/adaptive-concurrency.md),
    ``concurrency`` until the controller has written one; a live concurrency still wins.
    ``prefetch`` jobs (default: ``concurrency``) may wait in a buffer for a free slot when
    there is no rate limit and handlers are short: once ``prefetch_warmup`` runs have
    finished in under half of ``prefetch_hold_s`` on average; ``prefetch_hold_s`` bounds
    how long a job may wait there (:mod:`sluice.worker.prefetch`). For long handlers the
    round trip a buffer saves is noise, and a buffer would only hold jobs back from other
    workers and from a pause.

    The settings are taken when the worker is created (each part gets its own): assigning
    one of them afterwards raises ``AttributeError`` rather than silently doing nothing.
    ``handle_signals`` (read by :meth:`run`) and ``concurrency`` may still be changed.
    """

    _FIXED_AFTER_INIT = frozenset(
        {
            "queue",
            "handler",
            "configured_concurrency",
            "rate_limit",
            "lease_ms",
            "heartbeat_ms",
            "shutdown_grace_s",
            "retry_base_ms",
            "retry_max_ms",
            "idle_poll_s",
            "id",
            "batch_size",
            "prefetch",
            "adaptive",
        }
    )

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
        adaptive: bool = False,
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
        self.prefetch = concurrency if prefetch is None else prefetch

        self._slots = Slots(concurrency, PrefetchBuffer(prefetch_hold_s))
        retry = RetryPolicy(queue, base_ms=retry_base_ms, max_ms=retry_max_ms)
        self._processor = Processor(self._slots, handler, retry, prefetch_warmup=prefetch_warmup)
        self._waker = Waker(queue, self._slots.changed, idle_poll_s=idle_poll_s)
        self._fetcher = Fetcher(
            queue,
            self._slots,
            self._processor,
            self._waker,
            worker_id=self.id,
            lease_ms=lease_ms,
            rate_limit=rate_limit,
            batch_size=batch_size,
            prefetch=self.prefetch,
            idle_poll_s=idle_poll_s,
        )
        # Adaptive mode: the slots are this worker's share of the queue's target, which one
        # controller per queue sets (sluice.control); ``concurrency`` serves until it has.
        share = ShareReader(queue, self.id, live_s=heartbeat_ms * 5 / 1000) if adaptive else None
        self.adaptive = adaptive
        self._controls = Controls(
            queue, self._slots, configured_concurrency=concurrency, share=share
        )
        self._heartbeat = Heartbeat(
            queue,
            self._slots,
            self._processor,
            self._controls,
            worker_id=self.id,
            lease_ms=lease_ms,
            heartbeat_ms=heartbeat_ms,
            rate_limit=rate_limit,
        )
        self._stopped = asyncio.Event()
        self._built = True

    def __setattr__(self, name: str, value: object) -> None:
        if name in Worker._FIXED_AFTER_INIT and self.__dict__.get("_built"):
            raise AttributeError(
                f"Worker.{name} is read when the worker is created; pass {name}= to Worker()"
            )
        object.__setattr__(self, name, value)

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
            asyncio.create_task(self._heartbeat.run(), name=f"heartbeat {self.id}"),
            asyncio.create_task(self._heartbeat.watch_leases(), name=f"leases {self.id}"),
            asyncio.create_task(control.listen(self.queue, self._controls.on_message, subscribed)),
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
            await self._fetcher.run()
            await finish_or_release(
                self.queue, self._slots, self._fetcher, grace_s=self.shutdown_grace_s
            )
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
        if not self._slots.stopping:
            log.info("worker %s stopping", self.id)
        self._slots.stopping = True
        self._slots.changed.set()

    async def stop(self) -> None:
        """Request a stop and wait until the worker has shut down."""
        self.request_stop()
        await self._stopped.wait()

    async def wait_heartbeat(self) -> None:
        """Wait for the next successful heartbeat (registry written, leases renewed)."""
        self._heartbeat.succeeded.clear()
        await self._heartbeat.succeeded.wait()

    # ------------------------------------------------------------------ state

    @property
    def concurrency(self) -> int:
        """Slots in use now: ``concurrency`` as configured, or the queue's live setting."""
        return self._slots.concurrency

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        self._slots.concurrency = value

    @property
    def busy(self) -> int:
        return len(self._slots.running)

    @property
    def buffered(self) -> int:
        """Jobs reserved into the prefetch buffer, waiting for a slot."""
        return len(self._slots.buffer)

    @property
    def processed(self) -> int:
        """Turns completed since the worker was created."""
        return self._processor.processed

    @property
    def failed(self) -> int:
        """Turns whose handler raised since the worker was created."""
        return self._processor.failed

    @property
    def utilization(self) -> float:
        """Busy slot-time over capacity, as of the last heartbeat."""
        return self._heartbeat.utilization

    @property
    def throughput(self) -> float:
        """Completions per second, as of the last heartbeat."""
        return self._heartbeat.throughput
