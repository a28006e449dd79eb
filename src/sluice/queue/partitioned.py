"""A queue spread over N partitions: the same API as :class:`~sluice.queue.queue.Queue`,
over per-partition engines (docs/partitions.md).

Each partition is an ordinary engine (the same Lua scripts) on keys of its own hash tag,
``sluice:{name}:`` for partition 0 and, for p >= 1, the tag the layout recorded when the
partition was created (``sluice:{name#p}:``, or ``sluice:{name~k#p}:`` where that spreads the
partitions over a cluster's masters), so every script call touches one partition's keys.
A conversation lives on partition ``crc32(key) % N`` (:func:`sluice.keys.partition_of`);
a job id names its partition ("<p>_<n>" for p >= 1).
This class routes what concerns one conversation or job to its partition, aggregates what
concerns the queue, and, on the worker's side, reserves across partitions in a rotation
(:mod:`sluice.queue.partition_leasing`) under one global rate limit (``lua/limiter.lua``).

The layout (N, and the previous N while a resize is in progress: :mod:`sluice.queue.layout`)
is recorded in Redis; the ``partitions`` a queue is constructed with only records the first
one. Every enqueue carries the epoch of the layout it was routed by and is refused by a
partition that knows a later one, so producers never route by a stale layout.

Until the layout is first read, the engines of partitions p >= 1 are provisional, on the plain
tags; adopting a layout replaces every engine whose recorded tag differs (tags never change
once recorded, so that happens at most once per partition). Whatever touches a partition
reads the layout first (:meth:`PartitionedQueue.check_layout`, :meth:`current_engines`).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sluice import tracing
from sluice.keys import partition_of, split_job_id
from sluice.queue import fairness
from sluice.queue import layout as layouts
from sluice.queue.job import JobRecord
from sluice.queue.layout import Layout
from sluice.queue.partition_leasing import PartitionLeasing
from sluice.queue.queue import Queue
from sluice.queue.types import Enqueued, as_text
from sluice.tracing import messaging

#: How long a worker trusts the layout it read before reading it again (producers read it
#: again whenever a partition refuses their epoch).
LAYOUT_TTL_S = 1.0
#: How often a worker tries to end a resize in progress.
FINISH_EVERY_S = 2.0
# enqueue.lua's refusals.
_STALE, _ABSENT = -1, -2


class PartitionedQueue(PartitionLeasing, Queue):
    """``Queue(name, ..., partitions=N)`` for N > 1 (the constructor returns this class)."""

    def __init__(
        self,
        name: str = "inbound",
        *,
        partitions: int = 1,
        serve: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("partition", None)
        super().__init__(name, partitions=partitions, **kwargs)
        if serve is not None and (not serve or min(serve) < 0):
            raise ValueError(f"serve must name partitions (0, 1, ...), got {list(serve)}")
        # The partitions a worker of this queue object reserves from (None: all of them).
        self._serve = sorted(set(serve)) if serve is not None else None
        self._shared = {k: v for k, v in kwargs.items() if k not in ("url", "redis")}
        self._engines: list[Queue] = []
        self._grow(partitions)
        self.layout: Layout | None = None
        self._layout_at = -1e9
        self._finish_at = -1e9
        self._init_leasing()

    def _engine(self, partition: int, tag: str | None = None) -> Queue:
        return Queue(self.name, redis=self.redis, partition=partition, tag=tag, **self._shared)

    def _grow(self, count: int) -> None:
        while len(self._engines) < count:
            self._engines.append(self._engine(len(self._engines)))

    def _adopt(self, layout: Layout) -> Layout:
        self.layout = layout
        self._layout_at = time.monotonic()
        self._grow(layout.highest)
        for p in range(1, layout.highest):
            keys = layout.keys(self.keys, p)
            if self._engines[p].keys != keys:  # a provisional engine: the recorded tag wins
                self._engines[p] = self._engine(p, keys.tag)
        return layout

    async def current_engines(self) -> list[Queue]:
        """The engines of every partition the queue has had, by the layout (read now when
        none was, or when the last read is older than a second)."""
        return await self._parts()

    @property
    def engines(self) -> list[Queue]:
        return list(self._engines)

    @property
    def served_partitions(self) -> list[int]:
        """The partitions a worker of this queue reserves from: all the queue has, or the
        ``serve`` subset it was constructed with (jobs it holds are acknowledged, extended
        and failed on their own partitions whatever it serves)."""
        if self._serve is None:
            return list(range(len(self._engines)))
        self._grow(self._serve[-1] + 1)
        return list(self._serve)

    @property
    def wake_keys(self) -> list[str]:
        return [self._engines[p].keys.wake for p in self.served_partitions]

    @property
    def control_channels(self) -> list[str]:
        return [self._engines[p].keys.control for p in self.served_partitions]

    def engine_of(self, key: str) -> Queue:
        """The engine of a conversation's home partition (by the layout last read)."""
        layout = self.layout
        n = layout.partitions if layout is not None else self.partitions
        return self._engines[partition_of(key, n)]

    def engine_of_job(self, job_id: str) -> Queue:
        """The engine of the partition a job id names."""
        return self._engines[self._part_of_job(job_id)]

    def _part_of_job(self, job_id: str) -> int:
        try:
            part = split_job_id(job_id)[0]
        except ValueError:
            part = 0
        self._grow(part + 1)
        return part

    async def check_layout(self, *, refresh: bool = False) -> Layout:
        """The layout: recorded now if none is, read again when ``refresh`` or when the
        last read is older than a second (workers); a worker also tries to end a resize."""
        layout = self.layout
        if layout is None:
            return self._adopt(
                await layouts.init(self.redis, self.scripts, self.keys, self.partitions)
            )
        now = time.monotonic()
        if refresh or now - self._layout_at > LAYOUT_TTL_S:
            layout = self._adopt(await layouts.read(self.redis, self.keys) or layout)
        return layout

    async def _try_finish(self, layout: Layout) -> None:
        now = time.monotonic()
        if layout.resizing and now - self._finish_at > FINISH_EVERY_S:
            self._finish_at = now
            done = await layouts.finish(self.redis, self.scripts, self.keys, layout)
            if done is not None:
                self._adopt(done)

    async def resize(self, partitions: int) -> Layout:
        """Start moving the queue to ``partitions`` partitions. A conversation stays on its
        old partition until it has neither a lane nor a job in flight there; then its
        messages go to its new one. Workers end the resize once no conversation is left away
        from home (:meth:`finish_resize` does it at once). Raises
        :class:`~sluice.queue.layout.ResizeInProgressError` while one is in progress."""
        await self.check_layout()
        paused = await self.is_paused()
        caps = await fairness.read_caps(self.redis, self._engines[0].keys)
        layout = self._adopt(await layouts.resize(self.redis, self.scripts, self.keys, partitions))
        if paused:  # partitions new to the queue start paused like the others
            await self.pause()
        if caps.on:  # and with the tenant fairness caps (workers set them only at start)
            await self.set_fairness(caps)
        return layout

    async def finish_resize(self) -> bool:
        """End the resize in progress if it can end now; True if none is in progress after."""
        layout = await self.check_layout(refresh=True)
        done = await layouts.finish(self.redis, self.scripts, self.keys, layout)
        if done is not None:
            self._adopt(done)
        return not (self.layout or layout).resizing

    async def _all(self, calls: Iterable[Any]) -> list[Any]:
        return list(await asyncio.gather(*calls))

    async def _parts(self) -> list[Queue]:
        await self.check_layout()
        return list(self._engines)

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
        target: int | None = None,
        due_in_ms: float | None = None,
    ) -> Enqueued:
        """See :meth:`Queue.add`."""
        args = self._engines[0]._enqueue_args(
            key, payload, id, priority, hops, max_attempts, target, due_in_ms
        )
        if tracing.enabled:
            with messaging.sending(self.name, key, id, len(args[4]), args) as sent:
                result = await self._route(args)
                sent.message(result.job_id, duplicate=result.duplicate)
            return result
        return await self._route(args)

    async def _route(self, args: list[Any]) -> Enqueued:
        """Send one enqueue to where its conversation lives now (see the module
        :mod:`sluice.queue.layout` for the rule), again with a fresh layout if refused."""
        key, hop_count = args[3], args[9]
        layout = await self.check_layout()
        while True:
            old = layout.old_home(key)
            targets = (
                [(old, "c"), (layout.home(key), "")]
                if old is not None
                else [(layout.home(key), "")]
            )
            for part, cond in targets:
                engine = self._engines[part]
                args[0] = engine.keys.prefix
                args[9] = f"{hop_count}|{layout.epoch}|{cond}"
                job_id, created = await engine._run_enqueue(args)  # WAITs if asked to
                created = int(created)
                if created == _ABSENT:
                    continue
                if created != _STALE:
                    return Enqueued(as_text(job_id), duplicate=not created)
                break
            sent = layout.epoch
            layout = await self.check_layout(refresh=True)
            if layout.epoch == sent:
                # The partition has not heard of the current layout yet: a resize is being
                # announced, or its announcer died halfway. Announcing again is harmless
                # (an epoch only moves forward), so do it rather than wait.
                await layouts.mirror(self.redis, self.scripts, self.keys, layout)

    async def _enqueue_pipelined(self, arg_lists: list[list[Any]]) -> list[str]:
        """Queue.enqueue_many's send step (its tracing included): each message to its
        conversation's partition, one pipeline per partition while no resize is in progress,
        else one at a time; ids in the order of the requests."""
        layout = await self.check_layout()
        if layout.resizing:
            return [(await self._route(args)).job_id for args in arg_lists]
        by_part: dict[int, list[int]] = {}
        for i, args in enumerate(arg_lists):
            by_part.setdefault(layout.home(args[3]), []).append(i)
        answers = await self._all(
            self._pipelined(p, [arg_lists[i] for i in idx], layout.epoch)
            for p, idx in by_part.items()
        )
        ids = [""] * len(arg_lists)
        for idx, got in zip(by_part.values(), answers, strict=True):
            for i, (job_id, created) in zip(idx, got, strict=True):
                # Refused (a resize began meanwhile): a partition refuses every enqueue after
                # its first refusal, so these are the tail of its share, sent in order now.
                ids[i] = as_text(job_id) if int(created) != _STALE else ""
        for i, job_id in enumerate(ids):
            if not job_id:
                ids[i] = (await self._route(arg_lists[i])).job_id
        return ids

    async def _pipelined(self, part: int, arg_lists: list[list[Any]], epoch: int) -> list[Any]:
        engine = self._engines[part]
        script = engine.scripts.enqueue
        sent = [
            [engine.keys.prefix, *args[1:9], f"{args[9]}|{epoch}|", *args[10:]]
            for args in arg_lists
        ]
        if engine.wait_replicas:  # one WAIT after the partition's batch, on its connection
            return list(await engine._enqueue_replicated(sent))
        await self.redis.script_load(script.script)
        pipe = self.redis.pipeline(transaction=False)
        for args in sent:
            # execute_command, not pipe.evalsha, which redis-py's cluster pipeline refuses
            # (see Queue._enqueue_pipelined); routed by the partition's meta key.
            pipe.execute_command("EVALSHA", script.sha, 1, *engine._kv, *args)
        return list(await pipe.execute())

    # ---------------------------------------------------------------- control

    async def pause(self) -> bool:
        return any(await self._all(e.pause() for e in await self._parts()))

    async def resume(self) -> bool:
        return any(await self._all(e.resume() for e in await self._parts()))

    async def is_paused(self) -> bool:
        return any(await self._all(e.is_paused() for e in await self._parts()))

    async def drain(self) -> int:
        return sum(await self._all(e.drain() for e in await self._parts()))

    async def cancel(self, key: str, reason: str = "cancelled") -> int:
        """The conversation's waiting jobs, at home and (during a resize) on its old
        partition."""
        layout = await self.check_layout()
        old = layout.old_home(key)
        parts = {layout.home(key)} | ({old} if old is not None else set())
        return sum(await self._all(self._engines[p].cancel(key, reason) for p in parts))

    async def partition_counts(self) -> list[dict[str, Any]]:
        return await self._all(e.counts() for e in await self._parts())

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
        await self.check_layout()  # the channels are the partitions' (their recorded tags)
        await self._all(self.redis.publish(ch, "rate") for ch in self.control_channels)

    async def set_fairness(self, caps: fairness.FairnessCaps) -> int:
        """The caps on every partition: each enforces them on its own lanes, so an account
        spread over N partitions may have up to N times the concurrency cap in flight."""
        return sum(await self._all(e.set_fairness(caps) for e in await self._parts()))

    async def fairness(self) -> fairness.FairnessSnapshot:
        return fairness.merge(await self._all(e.fairness() for e in await self._parts()))

    async def set_events(self, all_transitions: bool) -> None:
        await self._all(e.set_events(all_transitions) for e in await self._parts())

    async def live_settings(self) -> dict[str, int | None]:
        settings = await super().live_settings()  # concurrency: partition 0's meta
        rate = await self.redis.hget(self._limiter_meta, "rate_limit")
        settings["rate_limit"] = int(rate) if rate is not None else None
        return settings

    # ---------------------------------------------------------------- inspection

    async def get_job(self, job_id: str) -> JobRecord | None:
        await self.check_layout()
        return await self.engine_of_job(job_id).get_job(job_id)

    async def _records(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """Records of jobs on any partitions, in the order of ``job_ids`` (those found)."""
        await self.check_layout()
        by_engine: dict[int, list[str]] = {}
        for job_id in job_ids:
            by_engine.setdefault(self._part_of_job(job_id), []).append(job_id)
        found = await self._all(self._engines[p]._records(ids) for p, ids in by_engine.items())
        by_id = {r.id: r for records in found for r in records}
        return [by_id[job_id] for job_id in job_ids if job_id in by_id]

    async def find_by_message_id(self, message_id: str) -> str | None:
        """Dedupe records live on the message's partition; the first found answers."""
        for found in await self._all(e.find_by_message_id(message_id) for e in await self._parts()):
            if found:
                return str(found)
        return None

    async def dead_letters(self, limit: int = 100, offset: int = 0) -> list[JobRecord]:
        """Dead letters of every partition merged, newest first."""
        last = offset + limit - 1
        each = await self._all(
            self.redis.zrevrange(e.keys.dead, 0, last, withscores=True) for e in await self._parts()
        )
        merged = heapq.merge(*each, key=lambda member: -float(member[1]))
        ids = [as_text(job_id) for job_id, _ in merged][offset : offset + limit]
        return await self._records(ids)

    async def retry_dead(self, job_id: str) -> bool:
        await self.check_layout()
        return await self.engine_of_job(job_id).retry_dead(job_id)

    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        await self.check_layout()
        if not job_ids:
            return sum(await self._all(e.purge_dead() for e in await self._parts()))
        by_engine: dict[int, list[str]] = {}
        for job_id in job_ids:
            by_engine.setdefault(self._part_of_job(job_id), []).append(job_id)
        return sum(
            await self._all(self._engines[p].purge_dead(ids) for p, ids in by_engine.items())
        )
