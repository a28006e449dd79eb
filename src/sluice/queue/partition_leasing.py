"""The worker's side of a partitioned queue: one exchange visits the partitions in a
rotation, under one global rate limit (docs/partitions.md).

A worker's exchange (acknowledge, charge starts, reserve) becomes one call per partition
it concerns, made in a rotation that starts at a partition chosen by the exchange's request
id: the first partition is asked for every free slot, the next for what is still free, and
so on, and a partition with completions to acknowledge is always called. Each call is the
unchanged per-partition script, earliest deadline first within its partition. The start
is a hash of the request id, so a worker's exchanges start at every partition equally often
and a re-sent exchange (same request id, after a Redis error) visits the same partitions in
the same order: each answers it from its own record, as an unpartitioned queue does.

Under a rate limit the exchange first asks the limiter (``lua/limiter.lua``, on a hash tag
of its own) for start tokens, reserves at most that many turns, and returns the tokens it
did not use. Nothing is prefetched under a rate limit (as in an unpartitioned queue).
"""

from __future__ import annotations

import asyncio
import time
import zlib
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

    def _part_of_job(self, job_id: str) -> int:  # pragma: no cover - the class's own
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

    def _rotation(self, request_id: str) -> list[int]:
        count = len(self._engines)
        first = zlib.crc32(request_id.encode()) % count
        return [(first + i) % count for i in range(count)]

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
        lost: list[str] = []
        finished: list[Finished] = []
        jobs: list[Job] = []
        statuses: list[str] = []
        waits: list[int] = []
        starts = 0
        for p in self._rotation(rid):
            free, room = max(0, want - starts), max(0, prefetch)
            if not free and not room and p not in acks and p not in charges:
                continue
            gone, got, ended = await self._engines[p].complete(
                acks.get(p, []),
                started=charges.get(p, []),
                reserve=free,
                prefetch=room,
                request_id=rid,
                worker_id=worker_id,
                lease_ms=lease_ms,
                rate_limit=0,
                rate_guard_ms=rate_guard_ms,
                batch=batch,
                report=report,
            )
            lost += gone
            finished += ended
            jobs += got.jobs
            buffered = sum(1 for j in got.jobs if j.prefetched)
            starts += len(got.jobs) - buffered
            prefetch -= buffered
            statuses.append(got.status)
            if got.retry_after_ms > 0:
                waits.append(got.retry_after_ms)
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
