"""A queue spread over N partitions: the same API as :class:`~sluice.queue.queue.Queue`,
over N per-partition engines (docs/partitions.md).

Each partition is an ordinary engine (the same Lua scripts) on keys of its own hash tag,
``sluice:{name}:`` for partition 0 and ``sluice:{name#p}:`` for p >= 1, so every script call
touches one partition's keys. A conversation lives on partition ``crc32(key) % N``
(:func:`sluice.keys.partition_of`); a job id names its partition ("<p>_<n>" for p >= 1).
This class routes what concerns one conversation or job to its partition, aggregates what
concerns the queue, and, on the worker's side, reserves across partitions in a rotation
(:mod:`sluice.queue.partition_leasing`) under one global rate limit (``lua/limiter.lua``).

The number of partitions is recorded in the layout key (``sluice:{name}:layout``) the first
time a partitioned queue is used; a queue constructed with another number refuses to work
(resizing is not implemented yet: docs/partitions.md says what it will take).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterable, Sequence
from typing import Any

from sluice import tracing
from sluice.errors import ConfigError
from sluice.keys import partition_of, split_job_id
from sluice.queue.job import JobRecord
from sluice.queue.partition_leasing import PartitionLeasing
from sluice.queue.queue import Queue
from sluice.queue.types import Enqueued, EnqueueRequest, as_text
from sluice.tracing import messaging


class PartitionedQueue(PartitionLeasing, Queue):
    """``Queue(name, ..., partitions=N)`` for N > 1 (the constructor returns this class)."""

    def __init__(self, name: str = "inbound", *, partitions: int = 1, **kwargs: Any) -> None:
        kwargs.pop("partition", None)
        super().__init__(name, partitions=partitions, **kwargs)
        shared = {k: v for k, v in kwargs.items() if k not in ("url", "redis")}
        self._engines: list[Queue] = [
            Queue(name, redis=self.redis, partition=p, **shared) for p in range(partitions)
        ]
        self._layout_checked = False
        self._init_leasing()

    @property
    def engines(self) -> list[Queue]:
        return list(self._engines)

    @property
    def wake_keys(self) -> list[str]:
        return [e.keys.wake for e in self._engines]

    @property
    def control_channels(self) -> list[str]:
        return [e.keys.control for e in self._engines]

    def engine_of(self, key: str) -> Queue:
        """The engine of a conversation's partition."""
        return self._engines[partition_of(key, self.partitions)]

    def engine_of_job(self, job_id: str) -> Queue:
        """The engine of the partition a job id names."""
        return self._engines[self._part_of_job(job_id)]

    def _part_of_job(self, job_id: str) -> int:
        try:
            part = split_job_id(job_id)[0]
        except ValueError:
            part = 0
        return part if part < self.partitions else 0

    async def check_layout(self) -> None:
        """Record this queue's number of partitions, or refuse a different recorded one."""
        if self._layout_checked:
            return
        layout = self.keys.layout
        await self.redis.hsetnx(layout, "partitions", self.partitions)
        recorded = int(await self.redis.hget(layout, "partitions") or 0)
        if recorded != self.partitions:
            raise ConfigError(
                f"queue {self.name!r} is laid out on {recorded} partitions, not "
                f"{self.partitions} (SLUICE_PARTITIONS); resizing is not supported yet"
            )
        self._layout_checked = True

    async def _all(self, calls: Iterable[Any]) -> list[Any]:
        return list(await asyncio.gather(*calls))

    # ---------------------------------------------------------------- producers

    async def add(
        self,
        key: str,
        payload: Any,
        *,
        id: str | None = None,
        priority: str = "normal",
        hops: Any = None,
        max_attempts: int | None = None,
    ) -> Enqueued:
        await self.check_layout()
        return await self.engine_of(key).add(
            key, payload, id=id, priority=priority, hops=hops, max_attempts=max_attempts
        )

    async def enqueue_many(self, requests: Iterable[EnqueueRequest]) -> list[str]:
        """Each message to its conversation's partition, one pipeline per partition; ids in
        the order of ``requests``."""
        await self.check_layout()
        reqs = list(requests)
        parts = [partition_of(r.key, self.partitions) for r in reqs]
        arg_lists = [
            self._engines[p]._enqueue_args(r.key, r.payload, r.id, r.priority, r.hops, None)
            for r, p in zip(reqs, parts, strict=True)
        ]
        if not arg_lists:
            return []
        if tracing.enabled:
            with messaging.sending_batch(self.name, [a[3] for a in arg_lists]) as parents:
                for args, parent in zip(arg_lists, parents, strict=True):
                    args.append(parent)
                return await self._enqueue_spread(parts, arg_lists)
        return await self._enqueue_spread(parts, arg_lists)

    async def _enqueue_spread(self, parts: list[int], arg_lists: list[list[Any]]) -> list[str]:
        by_part: dict[int, list[int]] = {}
        for i, p in enumerate(parts):
            by_part.setdefault(p, []).append(i)
        answers = await self._all(
            self._engines[p]._enqueue_pipelined([arg_lists[i] for i in idx])
            for p, idx in by_part.items()
        )
        ids = [""] * len(parts)
        for idx, got in zip(by_part.values(), answers, strict=True):
            for i, job_id in zip(idx, got, strict=True):
                ids[i] = job_id
        return ids

    # ---------------------------------------------------------------- control

    async def pause(self) -> bool:
        return any(await self._all(e.pause() for e in self._engines))

    async def resume(self) -> bool:
        return any(await self._all(e.resume() for e in self._engines))

    async def is_paused(self) -> bool:
        return any(await self._all(e.is_paused() for e in self._engines))

    async def drain(self) -> int:
        return sum(await self._all(e.drain() for e in self._engines))

    async def cancel(self, key: str, reason: str = "cancelled") -> int:
        return await self.engine_of(key).cancel(key, reason)

    async def partition_counts(self) -> list[dict[str, Any]]:
        return await self._all(e.counts() for e in self._engines)

    async def counts(self) -> dict[str, Any]:
        """The sums over partitions; paused if any partition is, the oldest age of all."""
        each = await self.partition_counts()
        total: dict[str, Any] = {
            name: sum(c[name] for c in each)
            for name in ("waiting", "active", "delayed", "dead", "completed", "ready_lanes")
        }
        total["paused"] = any(c["paused"] for c in each)
        total["oldest_waiting_age_ms"] = max(c["oldest_waiting_age_ms"] for c in each)
        return total

    async def set_rate_limit(self, jobs_per_second: int | None) -> None:
        """The live global limit, kept by the limiter (``sluice:{name#rate}:meta``)."""
        if jobs_per_second is not None and jobs_per_second < 0:
            raise ValueError(f"rate_limit must not be negative, got {jobs_per_second}")
        meta = self._limiter_meta
        if jobs_per_second is None:
            await self.redis.hdel(meta, "rate_limit")
        else:
            await self.redis.hset(meta, "rate_limit", jobs_per_second)
        await self.redis.xadd(
            self.keys.events,
            {"type": "config", "job": "", "key": "rate_limit", "info": jobs_per_second or ""},
            maxlen=10_000,
            approximate=True,
        )
        self.forget_live_rate()
        await self._all(self.redis.publish(ch, "rate") for ch in self.control_channels)

    async def live_settings(self) -> dict[str, int | None]:
        settings = await super().live_settings()  # concurrency: partition 0's meta
        rate = await self.redis.hget(self._limiter_meta, "rate_limit")
        settings["rate_limit"] = int(rate) if rate is not None else None
        return settings

    # ---------------------------------------------------------------- inspection

    async def get_job(self, job_id: str) -> JobRecord | None:
        return await self.engine_of_job(job_id).get_job(job_id)

    async def _records(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """Records of jobs on any partitions, in the order of ``job_ids`` (those found)."""
        by_engine: dict[int, list[str]] = {}
        for job_id in job_ids:
            by_engine.setdefault(self._part_of_job(job_id), []).append(job_id)
        found = await self._all(self._engines[p]._records(ids) for p, ids in by_engine.items())
        by_id = {r.id: r for records in found for r in records}
        return [by_id[job_id] for job_id in job_ids if job_id in by_id]

    async def find_by_message_id(self, message_id: str) -> str | None:
        """Dedupe records live on the message's partition; the first found answers."""
        for found in await self._all(e.find_by_message_id(message_id) for e in self._engines):
            if found:
                return str(found)
        return None

    async def dead_letters(self, limit: int = 100, offset: int = 0) -> list[JobRecord]:
        """Dead letters of every partition merged, newest first."""
        last = offset + limit - 1
        each = await self._all(
            self.redis.zrevrange(e.keys.dead, 0, last, withscores=True) for e in self._engines
        )
        merged = heapq.merge(*each, key=lambda member: -float(member[1]))
        ids = [as_text(job_id) for job_id, _ in merged][offset : offset + limit]
        return await self._records(ids)

    async def retry_dead(self, job_id: str) -> bool:
        return await self.engine_of_job(job_id).retry_dead(job_id)

    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        if not job_ids:
            return sum(await self._all(e.purge_dead() for e in self._engines))
        by_engine: dict[int, list[str]] = {}
        for job_id in job_ids:
            by_engine.setdefault(self._part_of_job(job_id), []).append(job_id)
        return sum(
            await self._all(self._engines[p].purge_dead(ids) for p, ids in by_engine.items())
        )
