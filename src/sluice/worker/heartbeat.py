"""Keeping the worker's leases, and saying it is alive.

Each run holds a lease (:mod:`sluice.queue.lease`) that is a fence, not a hope: the worker
keeps a local deadline for it, never later than the lease's end in Redis, and only a
successful renewal moves it. Two loops keep it so:

- the **heartbeat** renews the leases of every run and buffered job (and charges the
  prefetched starts not sent yet), reloads the queue's live settings (and, in adaptive
  mode, this worker's share of the target), publishes the worker's record in the registry
  (:mod:`sluice.worker.registry`) and adds its broker-call counts to the queue's
  (:mod:`sluice.broker.meter`);
- the **watchdog** cancels every run whose local deadline passed without a renewal (Redis
  unreachable, the event loop blocked, a renewal refused): another runner may own the job
  by then, so the run's effects are refused and its job is neither acknowledged nor
  failed; Redis recovers it as it would a crashed worker's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from sluice.queue.queue import Queue
from sluice.worker import registry
from sluice.worker.control import Controls
from sluice.worker.processor import Processor
from sluice.worker.slots import Slots
from sluice.worker.types import REDIS_DOWN, raise_if_cancelled

log = logging.getLogger("sluice.worker")


class Heartbeat:
    """Renews leases, reloads live settings and reports to the registry every beat; watches
    the local lease deadlines in between."""

    def __init__(
        self,
        queue: Queue,
        slots: Slots,
        processor: Processor,
        controls: Controls,
        *,
        worker_id: str,
        lease_ms: int,
        heartbeat_ms: int,
        rate_limit: int,
    ) -> None:
        self.queue = queue
        self.utilization = 0.0  # as of the last beat
        self.throughput = 0.0
        self.succeeded = asyncio.Event()  # set by every successful beat
        self._slots = slots
        self._processor = processor
        self._controls = controls
        self._worker_id = worker_id
        self._lease_ms = lease_ms
        self._heartbeat_ms = heartbeat_ms
        self._rate_limit = rate_limit
        self._started_at = time.time()

    async def run(self) -> None:
        """Beat every ``heartbeat_ms`` until cancelled; a failed beat is logged, not fatal."""
        interval = self._heartbeat_ms / 1000
        while True:
            raise_if_cancelled()  # a beat may have swallowed it (worker/types.py)
            await asyncio.sleep(interval)
            try:
                await self._beat()
                self.succeeded.set()
            except REDIS_DOWN as exc:
                raise_if_cancelled()
                log.warning("heartbeat failed (%s)", exc)
            except Exception:
                raise_if_cancelled()
                log.exception("heartbeat failed")

    async def watch_leases(self) -> None:
        """Cancel every run whose local deadline passed without a renewal. One sweep every
        eighth of a lease (at most 250 ms) instead of a timer per job: the deadline already
        keeps a margin, and ``Job.guard`` checks the clock itself."""
        interval = min(0.25, self._lease_ms / 8000)
        while True:
            await asyncio.sleep(interval)
            for run in list(self._slots.running.values()):
                if run.lease.lost_reason is None and run.lease.lost:
                    self._processor.lose(run, "lease expired before the worker could renew it")

    async def _beat(self) -> None:
        await self._renew_leases()
        live = await self._controls.reload()
        slots, processor = self._slots, self._processor
        sample = processor.meter.sample(slots.concurrency)
        self.utilization, self.throughput = sample.utilization, sample.throughput
        info = registry.WorkerInfo(
            id=self._worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queue=self.queue.name,
            slots=slots.concurrency,
            busy=len(slots.running),
            utilization=round(self.utilization, 4),
            throughput=round(self.throughput, 3),
            processed=processor.processed,
            failed=processor.failed,
            rate_limit=live["rate_limit"] if live["rate_limit"] is not None else self._rate_limit,
            started_at=self._started_at,
            heartbeat_at=time.time(),
        )
        await registry.publish(
            self.queue.redis,
            self.queue.keys,
            info,
            ttl_ms=self._heartbeat_ms * 5,
            busy_ms=int(sample.busy_s * 1000) if self.queue.monitoring else None,
            capacity_ms=int(sample.capacity_s * 1000) if self.queue.monitoring else None,
        )
        # The broker calls since the last beat, for the adaptive controller and /metrics.
        await processor.broker_meter.flush(self.queue.redis, self.queue.keys)

    async def _renew_leases(self) -> None:
        """Extend the leases of every live run and buffered job; a run whose lease Redis no
        longer grants is cancelled, a buffered one forgotten. Charges starts not sent yet."""
        slots = self._slots
        runs = [run for run in slots.running.values() if not run.lease.lost]
        buffered = [entry for entry in slots.buffer.entries() if not entry.lease.lost]
        started = slots.take_started()
        sent_at = time.monotonic()
        try:
            lost = set(
                await self.queue.extend(
                    [run.job for run in runs] + [entry.job for entry in buffered],
                    self._lease_ms,
                    started=started,
                )
            )
        except BaseException:
            again = {(job.id, job.token): (job, sent_at) for job in started}
            slots.started = again | slots.started
            raise
        for entry in buffered:
            entry.lease.extended(sent_at, self._lease_ms)
        stale = slots.buffer.take_stale()
        if stale:  # held too long behind fresher ones: back to their lanes
            slots.hand_back.extend(e.job for e in stale)
            slots.changed.set()
        for run in runs:
            if slots.running.get((run.job.id, run.job.token)) is not run:
                continue  # finished meanwhile: its completion may have beaten the renewal
            if any(m.id in lost for m in run.job.members):
                self._processor.lose(
                    run, "Redis no longer grants the lease; another runner may own it"
                )
            else:
                run.lease.extended(sent_at, self._lease_ms)
        if lost:
            slots.buffer.forget(lost)
