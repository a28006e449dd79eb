"""The worker's side of a queue: reserve jobs, keep their leases, acknowledge or fail them.

These are the lower-level operations :class:`sluice.Worker` drives (a handler never calls
them); each is one Lua script (``lua/reserve.lua``, ``complete.lua``, ``fail.lua``,
``extend.lua``, ``fence.lua``, ``release.lua``), and this module only packs arguments and
reads results. Lists and options travel packed in single string arguments (parsed with Lua
patterns): redis-py encodes every argument, so fewer, longer ones are cheaper per job.
:class:`~sluice.queue.queue.Queue` inherits them, so ``queue.reserve(...)`` still reads
as it always did.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any, Literal

from sluice.errors import LeaseLostError
from sluice.keys import QueueKeys
from sluice.queue.job import Job, check_hop_name, check_note
from sluice.queue.scripts import Scripts
from sluice.queue.types import (
    DEFAULT_LEASE_MS,
    DEFAULT_RATE_GUARD_MS,
    RECOVER_PER_CALL,
    Completion,
    Finished,
    Reservation,
    as_text,
    new_request_id,
)
from sluice.redis.cluster import RedisClient, dedicated_client_like


class Leasing:
    """Reserve, complete, fail, extend, fence and release (mixed into ``Queue``, whose
    constructor sets the attributes below)."""

    keys: QueueKeys
    redis: RedisClient
    scripts: Scripts
    monitoring: bool
    completed_retention_ms: int
    sla_warning_ms: int
    sla_critical_ms: int
    _mon: int
    _kv: tuple[str, ...]
    _prefix: str

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
        """Take up to ``count`` conversations' next jobs to start now, and up to
        ``prefetch`` more for a prefetch buffer (``job.prefetched``: their attempt is
        charged when they start, see :meth:`complete`), earliest deadline first; with
        ``batch`` > 1 up to that many waiting jobs of a conversation come as one batch
        (``job.members``), to be answered in one turn. Re-sending a call with the same
        ``request_id`` returns the jobs the first one reserved (those still leased)."""
        options = _reserve_options(lease_ms, rate_limit, rate_guard_ms, self._mon, max(1, batch))
        raw = await self.scripts.reserve(
            self._kv,
            [self._prefix, request_id or new_request_id(), count, prefetch, worker_id, options],
        )
        return _reservation(raw)

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
        """Acknowledge finished jobs, charge the attempts of prefetched jobs that ``started``
        (every member of each), and in the same round trip reserve ``reserve`` more to start
        and ``prefetch`` for the buffer. Re-sending with the same ``request_id`` acts once.

        Returns the ids whose reservation had expired (not completed by us), the
        reservation, and the measured durations of the completed jobs.
        """
        monitoring = (2 if report else 1) if self.monitoring else 0
        args: list[str | int] = [
            self._prefix,
            request_id or new_request_id(),
            reserve,
            prefetch,
            worker_id,
            _reserve_options(lease_ms, rate_limit, rate_guard_ms, self._mon, max(1, batch)),
            _completion_options(
                self.completed_retention_ms, monitoring, self.sla_warning_ms, self.sla_critical_ms
            ),
            ",".join([f"{m.id}:{m.token}" for job in started for m in job.members]),
            ",".join([_packed_completion(c) for c in done]),
        ]
        lost, taken, flat = await self.scripts.complete(self._kv, args)
        finished = [
            Finished(
                job_id=as_text(flat[i]),
                key=as_text(flat[i + 1]),
                queue_wait_ms=int(flat[i + 2]),
                processing_ms=int(flat[i + 3]),
                sla_ms=int(flat[i + 4]),
                verdict=_verdict(flat[i + 5]),
            )
            for i in range(0, len(flat), 6)
        ]
        return [as_text(x) for x in lost], _reservation(taken), finished

    async def fail(
        self,
        job: Job,
        error: str,
        *,
        backoff_ms: int,
        retryable: bool = True,
    ) -> Literal["retry", "dead", "lost"]:
        """Record a failed attempt of a job (with all members of its batch): retry after
        ``backoff_ms`` at the head of its lane, or dead-letter it."""
        members = job.members
        args: list[Any] = [
            self._prefix,
            new_request_id(),
            error[:2000],
            max(0, backoff_ms),
            1 if retryable else 0,
            self._mon,
            len(members),
        ]
        for member in members:
            args.append(member.id)
            args.append(member.token)
        args.append(len(job.marks) + len(job.notes))
        for name, at in job.marks.items():
            args.append(name)
            args.append(f"{at:.3f}")
        for name, value in job.notes.items():  # "n:" tells a note from a hop (see Job.note)
            args.append(f"n:{name}")
            args.append(value)
        outcome = as_text(await self.scripts.fail(self._kv, args))
        if outcome == "retry":
            return "retry"
        if outcome == "dead":
            return "dead"
        if outcome == "lost":
            return "lost"
        raise RuntimeError(f"fail.lua returned {outcome!r}")

    async def extend(
        self,
        jobs: Sequence[Job],
        lease_ms: int = DEFAULT_LEASE_MS,
        *,
        started: Sequence[Job] = (),
    ) -> list[str]:
        """Renew leases (of every member of a batch) and charge the attempts of prefetched
        jobs that ``started``; returns ids of jobs that are no longer ours (a lease that
        already ran out is not revived). Safe to repeat."""
        members = [m for job in jobs for m in job.members]
        begun = [m for job in started for m in job.members]
        if not members and not begun:
            return []
        args: list[Any] = [self._prefix, lease_ms]
        _add_refs(args, members)
        _add_refs(args, begun)
        return [x.decode() for x in await self.scripts.extend(self._kv, args)]

    async def fence(self, job: Job, hold_ms: float) -> float:
        """Confirm that ``job``'s turn (every member) is still leased under its tokens and
        unexpired, record an effect in flight, and extend the lease to at least ``hold_ms``
        from now; returns the lease's end (epoch ms, Redis clock). Raises
        :class:`~sluice.errors.LeaseLostError` otherwise. Safe to repeat. Handlers use
        :meth:`Job.fence`, which also moves the worker's local deadline."""
        return await self.fence_turn([(m.id, m.token) for m in job.members], hold_ms)

    async def fence_turn(self, refs: Sequence[tuple[str, str]], hold_ms: float) -> float:
        """:meth:`fence` for a turn given as its (job id, token) pairs. A worker's lease
        keeps these rather than the job: a job that refers to its lease and a lease that
        refers back to the job would make every job garbage only the cycle collector can
        free, which costs throughput."""
        args: list[Any] = [self._prefix, int(hold_ms), len(refs), *itertools.chain(*refs)]
        ok, detail = await self.scripts.fence(self._kv, args)
        if int(ok) != 1:
            raise LeaseLostError(as_text(detail))
        return float(detail)

    async def release(
        self, jobs: Sequence[Job], reason: str | None = None, *, request_id: str | None = None
    ) -> int:
        """Hand unfinished jobs (with their batch members) back to the head of their lanes
        without an attempt penalty. ``reason`` becomes their recorded error: say why when a
        turn was cut short mid-way (it may have sent something that lands later)."""
        members = [m for job in jobs for m in job.members]
        if not members:
            return 0
        args: list[Any] = [self._prefix, request_id or new_request_id(), len(members)]
        args.append(reason or "")
        for job in members:
            args.append(job.id)
            args.append(job.token)
        return int(await self.scripts.release(self._kv, args))

    def blocking_client(
        self, read_timeout_s: float | None = None, *, connections: int = 1
    ) -> RedisClient:
        """A client on its own connection for BLPOP, so a blocked read never holds a
        connection of the shared pool. ``read_timeout_s`` must exceed every BLPOP timeout
        used on it; it ends a read from a Redis that stalls without closing. On a cluster it
        is a cluster client of its own, so the read follows the queue's slot, with room for
        ``connections`` reads at once on one node (one per partition's slot there)."""
        return dedicated_client_like(
            self.redis, read_timeout_s=read_timeout_s, connections=connections
        )


@functools.lru_cache(maxsize=256)
def _reserve_options(
    lease_ms: int, rate_limit: int, rate_guard_ms: int, monitoring: int, batch: int
) -> str:
    """The reservation options as reserve.lua and complete.lua take them (one argument, see
    lua/lib/reserve_options.lua); a worker's rarely change, so the string is kept."""
    return f"{lease_ms}|{rate_limit}|{rate_guard_ms}|{RECOVER_PER_CALL}|{monitoring}|{batch}"


@functools.lru_cache(maxsize=256)
def _completion_options(retention_ms: int, monitoring: int, warn_ms: int, crit_ms: int) -> str:
    """complete.lua's completion options (ARGV 7), kept like :func:`_reserve_options`."""
    return f"{retention_ms}|{monitoring}|{warn_ms}|{crit_ms}"


def _packed_completion(c: Completion) -> str:
    """One completion as complete.lua reads it: "id:token" or "id:token:hop=ms;hop=ms"
    (ids and tokens are numbers; hop names are checked by ``check_hop_name``); notes
    travel with the hops as "n:name=value" (checked by ``check_note``)."""
    if not c.marks and not c.notes:
        return f"{c.job_id}:{c.token}"
    hops = ";".join(f"{check_hop_name(n)}={at:.3f}" for n, at in c.marks.items())
    if c.notes:
        notes = ";".join("n:{}={}".format(*check_note(n, v)) for n, v in c.notes.items())
        hops = f"{hops};{notes}" if hops else notes
    return f"{c.job_id}:{c.token}:{hops}"


def _add_refs(args: list[Any], jobs: Sequence[Job]) -> None:
    """Append ``n`` and then each job's (id, reservation token), as the scripts read them."""
    args.append(len(jobs))
    for job in jobs:
        args.append(job.id)
        args.append(job.token)


def _reservation(raw: list[Any]) -> Reservation:
    """Jobs as the script returned them, with batch members attached to their leader."""
    status = raw[0].decode()
    leaders: list[Job] = []
    by_id: dict[str, Job] = {}
    for fields in raw[2:]:
        job = Job.from_fields(fields)
        leader = by_id.get(job.leader_id) if job.leader_id else None
        if leader is None:
            leaders.append(job)
            by_id[job.id] = job
        else:
            if not leader.batch:
                leader.batch.append(leader)
            leader.batch.append(job)
    return Reservation(status=status, retry_after_ms=int(raw[1]), jobs=leaders)


def _verdict(raw: object) -> Literal["ok", "warn", "crit"]:
    text = as_text(raw)
    if text == "crit":
        return "crit"
    if text == "warn":
        return "warn"
    return "ok"
