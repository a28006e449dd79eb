"""The worker's side of a partitioned queue: one exchange visits the partitions in a
rotation, under one global rate limit (docs/partitions.md).

A worker's exchange (acknowledge, charge starts, reserve) becomes one call per partition
it concerns, all at once. Which partitions to reserve from is planned first: one read of the
first lane heads of every partition's ready set, merged by deadline, says how many of this
worker's free slots each partition fills (:meth:`PartitionLeasing._plan`). Each call is the
unchanged per-partition script, earliest deadline first within its partition; a partition
with completions to acknowledge is always called, and so is the exchange's turn partition
(round robin), so every partition's maintenance runs. A re-sent exchange (same request id,
after a Redis error) keeps its plan: each partition answers it from its own record, as an
unpartitioned queue does. The price is one more round trip per exchange (the read).

Under a rate limit the exchange first asks the limiter (``lua/limiter.lua``, on a hash tag
of its own) for start tokens, reserves at most that many turns, and returns the tokens it
did not use. Nothing is prefetched under a rate limit (as in an unpartitioned queue).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from sluice.queue.job import Job
from sluice.queue.types import (
    DEFAULT_LEASE_MS,
    DEFAULT_RATE_GUARD_MS,
    Completion,
    Finished,
    Reservation,
    ReserveStatus,
    as_text,
    new_request_id,
)

if TYPE_CHECKING:
    from sluice.queue.layout import Layout
    from sluice.queue.queue import Queue

#: How long a worker trusts the live rate limit it read (when none is configured, the
#: exchange asks the limiter only while a live limit is known to be set).
LIVE_RATE_TTL_S = 1.0


class PartitionLeasing:
    """Reserve, complete, fail, extend, fence and release across partitions (mixed into
    :class:`~sluice.queue.partitioned.PartitionedQueue`)."""

    name: str
    partitions: int
    _engines: list[Queue]

    def _init_leasing(self) -> None:
        self._live_rate: int | None = None
        self._live_rate_at = -1e9
        self._turn = 0
        # The plans of recent exchanges, by request id (a re-sent exchange keeps its plan).
        self._plans: OrderedDict[str, dict[int, tuple[int, int]]] = OrderedDict()

    def _part_of_job(self, job_id: str) -> int:  # pragma: no cover - the class's own
        raise NotImplementedError

    @property
    def served_partitions(self) -> list[int]:  # pragma: no cover - the class's own
        raise NotImplementedError

    async def check_layout(self, *, refresh: bool = False) -> Layout:  # pragma: no cover
        raise NotImplementedError

    async def _try_finish(self, layout: Layout) -> None:  # pragma: no cover
        raise NotImplementedError

    @property
    def _limiter_meta(self) -> str:
        return self._engines[0].keys.limiter_prefix + "meta"

    def forget_live_rate(self) -> None:
        self._live_rate_at = -1e9

    async def _plan(
        self, request_id: str, want: int, prefetch: int, acked: list[int]
    ) -> dict[int, tuple[int, int]]:
        """How many turns to start and to prefetch from each partition: the ``want +
        prefetch`` earliest lane heads of all partitions, as one read of every ready set
        shows them, the first ``want`` to start. What that read could not place is shared
        by this exchange's *turn* partition (round robin over the exchanges of this queue
        object) and the partitions it acknowledges jobs on (their lanes' next jobs become
        ready only as the call completes them). The turn partition is called even with
        nothing to take (then by a reservation of nothing, which still recovers expired
        leases and promotes due retries: complete.lua does that only when it reserves), so
        every partition's maintenance runs within N exchanges however busy the others are;
        when nothing is ready anywhere, every partition is looked at (an idle worker's poll
        recovers a dead worker's leases on all of them). A re-sent exchange (same request
        id) keeps its plan."""
        plan = self._plans.get(request_id)
        if plan is not None:
            return plan
        total = want + prefetch
        plan = {}
        if total > 0:
            served = self.served_partitions
            turn = served[self._turn % len(served)]
            self._turn += 1
            pipe = self._engines[0].redis.pipeline(transaction=False)
            for p in served:
                pipe.zrange(self._engines[p].keys.ready, 0, total - 1, withscores=True)
            heads = await pipe.execute()
            merged = heapq.nsmallest(
                total,
                (
                    (float(score), p)
                    for p, rows in zip(served, heads, strict=True)
                    for _, score in rows
                ),
            )
            for i, (_, p) in enumerate(merged):
                start, buffer = plan.get(p, (0, 0))
                plan[p] = (start + 1, buffer) if i < want else (start, buffer + 1)
            placed = min(want, len(merged))
            left = [want - placed, total - len(merged) - (want - placed)]
            sharers = [turn, *(p for p in acked if p != turn and p in served)]
            plan.setdefault(turn, (0, 0))
            if not merged:  # nothing ready anywhere: every partition is looked at
                for p in served:
                    plan.setdefault(p, (0, 0))
            for kind in (0, 1):
                for i in range(left[kind]):
                    p = sharers[i % len(sharers)]
                    start, buffer = plan.get(p, (0, 0))
                    plan[p] = (start + 1, buffer) if kind == 0 else (start, buffer + 1)
        self._plans[request_id] = plan
        if len(self._plans) > 64:
            self._plans.popitem(last=False)
        return plan

    def _by_partition(self, jobs: Sequence[Job]) -> dict[int, list[Job]]:
        grouped: dict[int, list[Job]] = {}
        for job in jobs:
            grouped.setdefault(self._part_of_job(job.id), []).append(job)
        return grouped

    async def _limited(self, rate_limit: int) -> bool:
        """Whether a limit may be in force (configured, or a live one read within 1 s)."""
        if rate_limit > 0:
            return True
        now = time.monotonic()
        if now - self._live_rate_at > LIVE_RATE_TTL_S:
            engine = self._engines[0]
            raw = await engine.redis.hget(self._limiter_meta, "rate_limit")
            self._live_rate = int(raw) if raw is not None else None
            self._live_rate_at = now
        return bool(self._live_rate)

    async def _grant(
        self, want: int, request_id: str, rate_limit: int, guard_ms: int
    ) -> tuple[bool, int, int, list[str]]:
        """(a limit is in force, tokens granted, ms until one frees when none was, the
        tokens); all ``want`` when no limit is in force."""
        if not await self._limited(rate_limit):
            return False, want, 0, []
        if want <= 0:
            return True, 0, 0, []
        engine = self._engines[0]
        prefix = engine.keys.limiter_prefix
        raw = await engine.scripts.limiter(
            [self._limiter_meta], [prefix, "grant", request_id, want, rate_limit, guard_ms]
        )
        if int(raw[2]) == 0:
            return False, want, 0, []
        return True, int(raw[0]), int(raw[1]), [as_text(t) for t in raw[3:]]

    async def _give_back(self, tokens: list[str]) -> None:
        if tokens:
            engine = self._engines[0]
            args: list[str | int] = [
                engine.keys.limiter_prefix,
                "return",
                "",
                ",".join(tokens),
                0,
                0,
            ]
            await engine.scripts.limiter([self._limiter_meta], args)

    async def reserve(
        self,
        count: int,
        *,
        worker_id: str,
        prefetch: int = 0,
        lease_ms: int = DEFAULT_LEASE_MS,
        rate_limit: int = 0,
        rate_guard_ms: int = DEFAULT_RATE_GUARD_MS,
        batch: int = 1,
        request_id: str | None = None,
    ) -> Reservation:
        _, reservation, _ = await self.complete(
            [],
            reserve=count,
            prefetch=prefetch,
            request_id=request_id,
            worker_id=worker_id,
            lease_ms=lease_ms,
            rate_limit=rate_limit,
            rate_guard_ms=rate_guard_ms,
            batch=batch,
        )
        return reservation

    async def complete(
        self,
        done: Sequence[Completion],
        *,
        started: Sequence[Job] = (),
        reserve: int = 0,
        prefetch: int = 0,
        request_id: str | None = None,
        worker_id: str = "",
        lease_ms: int = DEFAULT_LEASE_MS,
        rate_limit: int = 0,
        rate_guard_ms: int = DEFAULT_RATE_GUARD_MS,
        batch: int = 1,
        report: bool = True,
    ) -> tuple[list[str], Reservation, list[Finished]]:
        await self._try_finish(await self.check_layout())
        rid = request_id or new_request_id()
        limited, want, retry_after, tokens = await self._grant(
            reserve, rid, rate_limit, rate_guard_ms
        )
        if limited:
            prefetch = 0
        acks: dict[int, list[Completion]] = {}
        for c in done:
            acks.setdefault(self._part_of_job(c.job_id), []).append(c)
        charges = self._by_partition(started)
        plan = await self._plan(rid, want, prefetch, sorted(set(acks) | set(charges)))
        # Partitions planned nothing are looked at by a reservation of nothing (a fresh
        # request id: it reserves nothing to replay).
        idle = [p for p, n in plan.items() if n == (0, 0)]
        plan = {p: n for p, n in plan.items() if n != (0, 0)}
        parts = sorted(set(plan) | set(acks) | set(charges))
        calls = asyncio.gather(
            *(
                self._engines[p].complete(
                    acks.get(p, []),
                    started=charges.get(p, []),
                    reserve=plan.get(p, (0, 0))[0],
                    prefetch=plan.get(p, (0, 0))[1],
                    request_id=rid,
                    worker_id=worker_id,
                    lease_ms=lease_ms,
                    rate_limit=0,
                    rate_guard_ms=rate_guard_ms,
                    batch=batch,
                    report=report,
                )
                for p in parts
            )
        )
        if not idle:
            answers = await calls
        else:
            upkeep = asyncio.gather(
                *(self._engines[p].reserve(0, worker_id=worker_id, lease_ms=lease_ms) for p in idle)
            )
            answers, _ = await asyncio.gather(calls, upkeep)
        lost: list[str] = []
        finished: list[Finished] = []
        jobs: list[Job] = []
        statuses: list[str] = []
        waits: list[int] = []
        for gone, got, ended in answers:
            lost += gone
            finished += ended
            jobs += got.jobs
            statuses.append(got.status)
            if got.retry_after_ms > 0:
                waits.append(got.retry_after_ms)
        starts = sum(1 for j in jobs if not j.prefetched)
        await self._give_back(tokens[starts:])
        status = _merged_status(statuses, rate_limited=reserve > 0 and want == 0)
        if status == "rate":
            waits = [retry_after]
        reservation = Reservation(status=status, retry_after_ms=min(waits, default=0), jobs=jobs)
        return lost, reservation, finished

    async def fail(
        self, job: Job, error: str, *, backoff_ms: int, retryable: bool = True
    ) -> Literal["retry", "dead", "lost"]:
        engine = self._engines[self._part_of_job(job.id)]
        return await engine.fail(job, error, backoff_ms=backoff_ms, retryable=retryable)

    async def extend(
        self, jobs: Sequence[Job], lease_ms: int = DEFAULT_LEASE_MS, *, started: Sequence[Job] = ()
    ) -> list[str]:
        held, begun = self._by_partition(jobs), self._by_partition(started)
        parts = sorted(set(held) | set(begun))
        answers = await asyncio.gather(
            *(
                self._engines[p].extend(held.get(p, []), lease_ms, started=begun.get(p, []))
                for p in parts
            )
        )
        return [job_id for lost in answers for job_id in lost]

    async def fence_turn(self, refs: Sequence[tuple[str, str]], hold_ms: float) -> float:
        return await self._engines[self._part_of_job(refs[0][0])].fence_turn(refs, hold_ms)

    async def release(
        self, jobs: Sequence[Job], reason: str | None = None, *, request_id: str | None = None
    ) -> int:
        rid = request_id or new_request_id()
        grouped = self._by_partition(jobs)
        answers = await asyncio.gather(
            *(self._engines[p].release(js, reason, request_id=rid) for p, js in grouped.items())
        )
        return sum(answers)


def _merged_status(statuses: list[str], *, rate_limited: bool) -> ReserveStatus:
    if rate_limited:
        return "rate"
    if statuses and all(s == "paused" for s in statuses):
        return "paused"
    return "ok"
