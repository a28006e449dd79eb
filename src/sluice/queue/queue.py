"""The public face of the engine: enqueue, inspect and control one queue.

Every state change is one Lua script (see ``lua/``); this module only shapes arguments
and results. Workers use the lower-level :meth:`Queue.reserve`, :meth:`Queue.complete`,
:meth:`Queue.fail`, :meth:`Queue.extend` and :meth:`Queue.release`.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis.asyncio as aioredis

from sluice.errors import LeaseLostError
from sluice.keys import QueueKeys
from sluice.queue.job import Job, JobRecord, check_hop_name
from sluice.queue.priority import DEFAULT_TARGETS_MS, target_ms
from sluice.queue.scripts import Scripts

DAY_S = 86_400
DEFAULT_LEASE_MS = 5_000
DEFAULT_RATE_GUARD_MS = 20
RECOVER_PER_CALL = 50

ReserveStatus = Literal["ok", "paused", "rate"]


class _RequestIds:
    """Request ids: a random 64-bit prefix per process and a counter. Unique across
    processes and hosts for far longer than a record is kept (60 s), and cheaper than
    reading the OS's randomness on every call of the hot path; a forked child draws a
    prefix of its own."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self._prefix = secrets.token_hex(8) + "-"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


_request_ids = _RequestIds()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_request_ids.reseed)


def new_request_id() -> str:
    """A fresh id for one state-changing script call: a repeat of the call (redis-py
    re-sends a command whose reply was lost) is answered from the first one's record
    instead of acting twice (lua/lib/request_key.lua, replayed.lua, remember.lua)."""
    return _request_ids.next()


@dataclass(frozen=True, slots=True)
class EnqueueRequest:
    """One message for :meth:`Queue.enqueue_many`."""

    key: str
    payload: Any
    id: str | None = None
    priority: str = "normal"
    hops: Mapping[str, float] | None = None


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What enqueue did: the job id, and whether the message id had been seen before."""

    job_id: str
    duplicate: bool


@dataclass(slots=True)
class Reservation:
    """Jobs handed to a worker, or why none were (paused, rate-limited, nothing ready)."""

    status: ReserveStatus
    retry_after_ms: int
    jobs: list[Job] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Finished:
    """A completed job's durations and SLA verdict, as the completing script measured them."""

    job_id: str
    key: str
    queue_wait_ms: int
    processing_ms: int
    sla_ms: int
    verdict: Literal["ok", "warn", "crit"]


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished job as the worker acknowledges it."""

    job_id: str
    token: str
    marks: Mapping[str, float]


class Queue:
    """A Redis-backed queue of conversation lanes.

    ``Queue("inbound", url="redis://127.0.0.1:6379/0")`` opens its own client;
    ``Queue("inbound", redis=client)`` shares one (the process pool). Lanes keep each
    conversation's messages in order with at most one in flight; across conversations
    the earliest deadline goes first.
    """

    def __init__(
        self,
        name: str = "inbound",
        *,
        url: str | None = None,
        redis: aioredis.Redis | None = None,
        priorities: Mapping[str, int] | None = None,
        max_attempts: int = 5,
        completed_retention_s: float = 7 * DAY_S,
        dedupe_ttl_s: float = DAY_S,
        sla_warning_ms: int = 10_000,
        sla_critical_ms: int = 30_000,
        monitoring: bool = True,
    ) -> None:
        if (url is None) == (redis is None):
            raise ValueError("pass exactly one of url= or redis=")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.name = name
        self.keys = QueueKeys(name)
        self._owns_client = redis is None
        self.redis: aioredis.Redis = (
            redis if redis is not None else aioredis.Redis.from_url(str(url))
        )
        self.priorities: Mapping[str, int] = dict(priorities or DEFAULT_TARGETS_MS)
        self.max_attempts = max_attempts
        self.completed_retention_ms = int(completed_retention_s * 1000)
        self.dedupe_ttl_ms = int(dedupe_ttl_s * 1000)
        if not 0 < sla_warning_ms < sla_critical_ms:
            raise ValueError(
                f"SLA thresholds must satisfy 0 < warning ({sla_warning_ms} ms) "
                f"< critical ({sla_critical_ms} ms)"
            )
        self.sla_warning_ms = sla_warning_ms
        self.sla_critical_ms = sla_critical_ms
        self.monitoring = monitoring
        self._mon = 1 if monitoring else 0
        self.scripts = Scripts(self.redis)
        # Scripts get one key (routing to the queue's slot); the rest derive from the prefix.
        self._kv: tuple[str, ...] = (self.keys.meta,)
        self._prefix = self.keys.prefix

    async def close(self) -> None:
        """Close the client if this queue opened it."""
        if self._owns_client:
            await self.redis.aclose()

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- producers

    def _enqueue_args(
        self,
        key: str,
        payload: Any,
        message_id: str | None,
        priority: str,
        hops: Mapping[str, float] | None,
        max_attempts: int | None,
    ) -> list[Any]:
        if not key:
            raise ValueError("conversation key must be a non-empty string")
        target = target_ms(priority, self.priorities)
        attempts = self.max_attempts if max_attempts is None else max_attempts
        if attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {attempts}")
        body = json.dumps(payload, separators=(",", ":"))
        args: list[Any] = [
            self._prefix,
            new_request_id(),
            message_id or "",
            key,
            body,
            priority,
            target,
            attempts,
            self.dedupe_ttl_ms,
            len(hops) if hops else 0,
        ]
        if hops:
            for name, at in hops.items():
                check_hop_name(name)
                args.append(name)
                args.append(f"{at:.3f}")
        return args

    async def add(
        self,
        key: str,
        payload: Any,
        *,
        id: str | None = None,
        priority: str = "normal",
        hops: Mapping[str, float] | None = None,
        max_attempts: int | None = None,
    ) -> Enqueued:
        """Enqueue and say whether the message id was a duplicate (intake needs to know)."""
        args = self._enqueue_args(key, payload, id, priority, hops, max_attempts)
        job_id, created = await self.scripts.enqueue(self._kv, args)
        return Enqueued(job_id.decode(), duplicate=not created)

    async def enqueue(
        self,
        key: str,
        payload: Any,
        *,
        id: str | None = None,
        priority: str = "normal",
        hops: Mapping[str, float] | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Add a message to the tail of conversation ``key``; returns its job id.

        With ``id`` (the source's message id) enqueue is idempotent for a day: a
        duplicate returns the first job's id and adds nothing.
        """
        result = await self.add(
            key, payload, id=id, priority=priority, hops=hops, max_attempts=max_attempts
        )
        return result.job_id

    async def enqueue_many(self, requests: Iterable[EnqueueRequest]) -> list[str]:
        """Enqueue many messages in one pipelined round trip (each still atomic)."""
        arg_lists = [
            self._enqueue_args(r.key, r.payload, r.id, r.priority, r.hops, None) for r in requests
        ]
        if not arg_lists:
            return []
        script = self.scripts.enqueue
        await self.redis.script_load(script.script)
        pipe = self.redis.pipeline(transaction=False)
        nkeys = len(self._kv)
        for args in arg_lists:
            pipe.evalsha(script.sha, nkeys, *self._kv, *args)
        results = await pipe.execute()
        return [job_id.decode() for job_id, _ in results]

    # ---------------------------------------------------------------- control

    async def pause(self) -> bool:
        """Stop new starts on every worker (running jobs finish). True if it changed."""
        return bool(await self.scripts.pause(self._kv, [self._prefix, "1"]))

    async def resume(self) -> bool:
        """Let workers start jobs again; idle workers are woken at once."""
        return bool(await self.scripts.pause(self._kv, [self._prefix, "0"]))

    async def is_paused(self) -> bool:
        return await self.redis.hget(self.keys.meta, "paused") == b"1"

    async def drain(self) -> int:
        """Remove every waiting and delayed job; returns how many were removed."""
        return int(await self.scripts.drain(self._kv, [self._prefix, new_request_id()]))

    async def cancel(self, key: str, reason: str = "cancelled") -> int:
        """Remove the waiting jobs of one conversation; returns how many."""
        args = [self._prefix, new_request_id(), key, reason]
        return int(await self.scripts.cancel(self._kv, args))

    async def counts(self) -> dict[str, Any]:
        """Sizes of the queue: waiting, active, delayed, dead, completed, paused, ..."""
        raw = await self.scripts.counts(self._kv, [self._prefix, self.completed_retention_ms])
        waiting, active, delayed, dead, completed, paused, age, ready = (int(x) for x in raw)
        return {
            "waiting": waiting,
            "active": active,
            "delayed": delayed,
            "dead": dead,
            "completed": completed,
            "paused": bool(paused),
            "oldest_waiting_age_ms": age,
            "ready_lanes": ready,
        }

    async def set_rate_limit(self, jobs_per_second: int | None) -> None:
        """Change the global rate limit live (None = back to each worker's configured one).
        Workers hand back their prefetch buffers at once: the limiter counts reservations."""
        await self._set_live("rate_limit", jobs_per_second)
        await self.redis.publish(self.keys.control, "rate")

    async def set_concurrency(self, slots: int | None) -> None:
        """Change every worker's slot count live (None = back to its configured value)."""
        if slots is not None and slots < 1:
            raise ValueError(f"concurrency must be at least 1, got {slots}")
        await self._set_live("concurrency", slots)

    async def _set_live(self, name: str, value: int | None) -> None:
        if value is not None and value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
        pipe = self.redis.pipeline(transaction=True)
        if value is None:
            pipe.hdel(self.keys.meta, name)
        else:
            pipe.hset(self.keys.meta, name, value)
        pipe.xadd(
            self.keys.events,
            {"type": "config", "job": "", "key": name, "info": "" if value is None else value},
            maxlen=10_000,
            approximate=True,
        )
        await pipe.execute()

    async def live_settings(self) -> dict[str, int | None]:
        """The live overrides stored in Redis (None where none is set)."""
        rate, conc = await self.redis.hmget(self.keys.meta, ["rate_limit", "concurrency"])
        return {
            "rate_limit": int(rate) if rate is not None else None,
            "concurrency": int(conc) if conc is not None else None,
        }

    # ---------------------------------------------------------------- inspection

    async def get_job(self, job_id: str) -> JobRecord | None:
        records = await self._records([job_id])
        return records[0] if records else None

    async def _records(self, job_ids: Sequence[str]) -> list[JobRecord]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
            pipe.get(self.keys.payload(job_id))
        raw = await pipe.execute()
        records = []
        for data, payload in zip(raw[0::2], raw[1::2], strict=True):
            if data:
                records.append(JobRecord.from_hash(data, payload))
        return records

    async def find_by_message_id(self, message_id: str) -> str | None:
        """The job id a message id was enqueued as (kept as long as the dedupe record)."""
        found = await self.redis.get(self.keys.dedupe(message_id))
        return _text(found) if found else None

    async def dead_letters(self, limit: int = 100, offset: int = 0) -> list[JobRecord]:
        """Dead-lettered jobs, newest first, with their last error."""
        ids = await self.redis.zrevrange(self.keys.dead, offset, offset + limit - 1)
        return await self._records([_text(job_id) for job_id in ids])

    async def retry_dead(self, job_id: str) -> bool:
        """Requeue a dead letter with fresh attempts; False if it is not a dead letter."""
        args = [self._prefix, new_request_id(), job_id]
        return bool(await self.scripts.retry_dead(self._kv, args))

    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        """Delete dead letters for good (all of them when no ids are given)."""
        args = [self._prefix, new_request_id(), *(job_ids or ())]
        return int(await self.scripts.purge_dead(self._kv, args))

    # ---------------------------------------------------------------- worker side

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
                job_id=_text(flat[i]),
                key=_text(flat[i + 1]),
                queue_wait_ms=int(flat[i + 2]),
                processing_ms=int(flat[i + 3]),
                sla_ms=int(flat[i + 4]),
                verdict=_verdict(flat[i + 5]),
            )
            for i in range(0, len(flat), 6)
        ]
        return [_text(x) for x in lost], _reservation(taken), finished

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
        args.append(len(job.marks))
        for name, at in job.marks.items():
            args.append(name)
            args.append(f"{at:.3f}")
        outcome = _text(await self.scripts.fail(self._kv, args))
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
            raise LeaseLostError(_text(detail))
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

    def blocking_client(self, read_timeout_s: float | None = None) -> aioredis.Redis:
        """A client on its own connection for BLPOP, so a blocked read never holds a
        connection of the shared pool. ``read_timeout_s`` must exceed every BLPOP timeout
        used on it; it ends a read from a Redis that stalls without closing."""
        pool = self.redis.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": read_timeout_s}
        dedicated = aioredis.ConnectionPool(
            connection_class=pool.connection_class, max_connections=1, **kwargs
        )
        return aioredis.Redis(connection_pool=dedicated)


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
    (ids and tokens are numbers; hop names are checked by ``check_hop_name``)."""
    if not c.marks:
        return f"{c.job_id}:{c.token}"
    hops = ";".join(f"{check_hop_name(n)}={at:.3f}" for n, at in c.marks.items())
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
    text = _text(raw)
    if text == "crit":
        return "crit"
    if text == "warn":
        return "warn"
    return "ok"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
