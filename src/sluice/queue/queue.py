"""The public face of the engine: enqueue, inspect and control one queue.

Every state change is one Lua script (see ``lua/``); this module only shapes arguments
and results. Workers use the lower-level :meth:`Queue.reserve`, :meth:`Queue.complete`,
:meth:`Queue.fail`, :meth:`Queue.extend` and :meth:`Queue.release`, which live in
:mod:`sluice.queue.leasing`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from sluice import tracing
from sluice.keys import QueueKeys
from sluice.queue import fairness
from sluice.queue.coalesce import EnqueueCoalescer
from sluice.queue.durable import enqueue_replicated
from sluice.queue.job import JobRecord, check_hop_name
from sluice.queue.leasing import Leasing
from sluice.queue.priority import DEFAULT_TARGETS_MS, target_ms
from sluice.queue.scripts import Scripts
from sluice.queue.types import (
    DAY_S,
    DEFAULT_LEASE_MS,
    DEFAULT_RATE_GUARD_MS,
    RECOVER_PER_CALL,
    Completion,
    Enqueued,
    EnqueueRequest,
    Finished,
    Reservation,
    ReserveStatus,
    as_text,
    new_request_id,
)
from sluice.redis.cluster import RedisClient
from sluice.tracing import messaging

__all__ = [
    "DAY_S",
    "DEFAULT_LEASE_MS",
    "DEFAULT_RATE_GUARD_MS",
    "RECOVER_PER_CALL",
    "Completion",
    "EnqueueRequest",
    "Enqueued",
    "Finished",
    "Queue",
    "Reservation",
    "ReserveStatus",
    "new_request_id",
]


class Queue(Leasing):
    """A Redis-backed queue of conversation lanes.

    ``Queue("inbound", url="redis://127.0.0.1:6379/0")`` opens its own client;
    ``Queue("inbound", redis=client)`` shares one (the process pool). Lanes keep each
    conversation's messages in order with at most one in flight; across conversations
    the earliest deadline goes first.

    ``partitions=N`` (N > 1) spreads the conversations over N partitions, each with its own
    hash tag (docs/partitions.md): the constructor then returns a
    :class:`~sluice.queue.partitioned.PartitionedQueue`, which has this same API. With the
    default 1 the keys are exactly those of an unpartitioned queue. ``partition`` and
    ``tag`` are for that class: the engine of one partition, its keys under the hash tag
    the layout recorded for it (``sluice:{<tag>}:``; docs/partitions.md).

    ``wait_replicas=N`` acknowledges an enqueue only once N replicas confirmed it (WAIT,
    at most ``wait_timeout_ms``; else :class:`~sluice.queue.durable.NotReplicatedError`):
    replication is asynchronous, and a failover loses what the replicas had not received
    (docs/cluster.md).
    """

    def __new__(cls, *args: Any, partitions: int = 1, **kwargs: Any) -> Queue:
        if cls is Queue and partitions > 1:
            from sluice.queue.partitioned import PartitionedQueue

            return object.__new__(PartitionedQueue)
        return object.__new__(cls)

    def __init__(
        self,
        name: str = "inbound",
        *,
        partitions: int = 1,
        partition: int = 0,
        tag: str | None = None,
        url: str | None = None,
        redis: RedisClient | None = None,
        priorities: Mapping[str, int] | None = None,
        max_attempts: int = 5,
        completed_retention_s: float = 7 * DAY_S,
        dedupe_ttl_s: float = DAY_S,
        sla_warning_ms: int = 10_000,
        sla_critical_ms: int = 30_000,
        monitoring: bool = True,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        if (url is None) == (redis is None):
            raise ValueError("pass exactly one of url= or redis=")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        self.name = name
        self.partitions = partitions
        self.keys = QueueKeys(name, partition, tag)
        self._owns_client = redis is None
        self.redis: RedisClient = redis if redis is not None else aioredis.Redis.from_url(str(url))
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
        if wait_replicas < 0 or wait_timeout_ms < 0:
            raise ValueError("wait_replicas and wait_timeout_ms must not be negative")
        # Enqueue acknowledged once this many replicas have it (queue/durable.py).
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._mon = 1 if monitoring else 0
        self.scripts = Scripts(self.redis)
        # Scripts get one key (routing to the queue's slot); the rest derive from the prefix.
        self._kv: tuple[str, ...] = (self.keys.meta,)
        self._prefix = self.keys.prefix
        # Concurrent adds share script calls (a group commit, queue/coalesce.py).
        self._coalescer = EnqueueCoalescer(
            self.scripts.enqueue, self.scripts.enqueue_batch, self._kv, self._prefix
        )

    @property
    def engines(self) -> list[Queue]:
        """The per-partition engines (this queue itself when it is not partitioned)."""
        return [self]

    async def current_engines(self) -> list[Queue]:
        """:attr:`engines` once the partition layout is known (a partitioned queue reads it
        first: only the layout knows its partitions' keys); for this class, no read."""
        return [self]

    def engine_of(self, key: str) -> Queue:
        """The engine of a conversation's partition (this queue when it is not partitioned)."""
        return self

    def engine_of_job(self, job_id: str) -> Queue:
        """The engine of the partition a job id names (this queue when not partitioned)."""
        return self

    @property
    def wake_keys(self) -> list[str]:
        """The wake lists an idle worker blocks on (one per partition)."""
        return [self.keys.wake]

    @property
    def control_channels(self) -> list[str]:
        """The control channels a worker listens on (one per partition)."""
        return [self.keys.control]

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
        target: int | None = None,
        due_in_ms: float | None = None,
    ) -> list[Any]:
        if not key:
            raise ValueError("conversation key must be a non-empty string")
        class_target = target_ms(priority, self.priorities)  # also checks the class
        # Checked here: lib/enqueue_one.lua parses "target/own" after it has written the
        # dedupe record and pushed the id on the lane, so a value it cannot read there
        # would leave the lane naming a job that was never recorded.
        if target is None:
            target = class_target
        elif isinstance(target, bool) or not isinstance(target, int) or target < 1:
            raise ValueError(f"target must be a whole number of ms >= 1, got {target!r}")
        if due_in_ms is not None and (
            isinstance(due_in_ms, bool)
            or not isinstance(due_in_ms, int | float)
            or not math.isfinite(due_in_ms)
        ):
            raise ValueError(f"due_in_ms must be a finite number of ms, got {due_in_ms!r}")
        # "target/own": the job's own first deadline, `due_in_ms` from Redis's now
        # (lib/enqueue_one.lua); a later head of its lane counts `target` as always.
        timing: int | str = target if due_in_ms is None else f"{target}/{round(due_in_ms)}"
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
            timing,
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
        target: int | None = None,
        due_in_ms: float | None = None,
    ) -> Enqueued:
        """Enqueue and say whether the message id was a duplicate (intake needs to know).

        ``target`` (ms) replaces the class's SLA target for this job (a priority rule's);
        ``due_in_ms`` sets the job's own deadline, that long from now (may be negative: its
        customer has waited longer already), when it heads an idle lane at once
        (docs/priorities.md); None: its target from now, as for every job before."""
        args = self._enqueue_args(key, payload, id, priority, hops, max_attempts, target, due_in_ms)
        if tracing.enabled:
            return await self._add_traced(key, id, args)
        job_id, created = await self._run_enqueue(args)
        return Enqueued(job_id.decode(), duplicate=not created)

    async def _add_traced(self, key: str, message_id: str | None, args: list[Any]) -> Enqueued:
        """:meth:`add` in a ``send`` span whose context the job carries (docs/tracing.md)."""
        with messaging.sending(self.name, key, message_id, len(args[4]), args) as sent:
            job_id, created = await self._run_enqueue(args)
            result = Enqueued(job_id.decode(), duplicate=not created)
            sent.message(result.job_id, duplicate=result.duplicate)
        return result

    async def _run_enqueue(self, args: list[Any]) -> Any:
        if self.wait_replicas:
            return (await self._enqueue_replicated([args]))[0]
        return await self._coalescer.enqueue(args)

    async def _enqueue_replicated(self, arg_lists: list[list[Any]]) -> list[tuple[bytes, int]]:
        return await enqueue_replicated(
            self.redis,
            self.scripts.enqueue,
            self._kv,
            arg_lists,
            replicas=self.wait_replicas,
            timeout_ms=self.wait_timeout_ms,
        )

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
        if tracing.enabled:
            # A create span per message (its context goes with it) and one send span.
            with messaging.sending_batch(self.name, [a[3] for a in arg_lists]) as parents:
                for args, parent in zip(arg_lists, parents, strict=True):
                    args.append(parent)
                return await self._enqueue_pipelined(arg_lists)
        return await self._enqueue_pipelined(arg_lists)

    async def _enqueue_pipelined(self, arg_lists: list[list[Any]]) -> list[str]:
        script = self.scripts.enqueue
        if self.wait_replicas:  # one WAIT after the batch, on the same connection
            return [job_id.decode() for job_id, _ in await self._enqueue_replicated(arg_lists)]
        await self.redis.script_load(script.script)
        pipe = self.redis.pipeline(transaction=False)
        nkeys = len(self._kv)
        for args in arg_lists:
            # execute_command, not pipe.evalsha: redis-py's cluster pipeline refuses the
            # evalsha method by name, yet routes EVALSHA by its declared key (the queue's
            # slot), so every call of the batch goes to the one node and stays atomic.
            pipe.execute_command("EVALSHA", script.sha, nkeys, *self._kv, *args)
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

    async def partition_counts(self) -> list[dict[str, Any]]:
        """:meth:`counts` of each partition, in partition order (one for this queue)."""
        return [await self.counts()]

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

    async def set_events(self, all_transitions: bool) -> None:
        """Log every job's transitions (enqueued, reserved, started, completed) to the event
        stream, or (the default) only the others: retries, dead letters, recoveries,
        hand-backs, fencing, cancels, pauses (docs/engine.md, "Event stream")."""
        if all_transitions:
            await self.redis.hset(self.keys.meta, "events", "all")
        else:
            await self.redis.hdel(self.keys.meta, "events")

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

    async def set_fairness(self, caps: fairness.FairnessCaps) -> int:
        """Cap each account's turns in flight and starts per second (docs/fairness.md);
        ``FairnessCaps()`` turns fairness off and returns its held-back lanes to the queue
        (returns how many). Workers hand back their prefetch buffers at once."""
        return await fairness.set_caps(self.redis, self.scripts, self.keys, caps)

    async def fairness(self) -> fairness.FairnessSnapshot:
        """The caps, the busiest accounts (turns in flight, lanes held back, decisions) and
        the totals of fairness decisions, for /metrics and the dashboard."""
        return await fairness.snapshot(self.redis, self.keys)

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
        return as_text(found) if found else None

    async def dead_letters(self, limit: int = 100, offset: int = 0) -> list[JobRecord]:
        """Dead-lettered jobs, newest first, with their last error."""
        ids = await self.redis.zrevrange(self.keys.dead, offset, offset + limit - 1)
        return await self._records([as_text(job_id) for job_id in ids])

    async def retry_dead(self, job_id: str) -> bool:
        """Requeue a dead letter with fresh attempts; False if it is not a dead letter."""
        args = [self._prefix, new_request_id(), job_id]
        return bool(await self.scripts.retry_dead(self._kv, args))

    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        """Delete dead letters for good (all of them when no ids are given)."""
        args = [self._prefix, new_request_id(), *(job_ids or ())]
        return int(await self.scripts.purge_dead(self._kv, args))
