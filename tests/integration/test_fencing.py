"""Leases as fences: one run per job, no effect after the lease, idempotent script calls,
attempts that count runs, and a prefetch buffer that obeys the queue.

Each test reproduces one of the failures the fencing issue reported against the old worker
(numbered as there) and asserts the rule that now holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from unittest.mock import patch

import pytest
import redis.asyncio as aioredis

from sluice import Job, LeaseLostError, Queue, Worker
from sluice.queue.queue import Completion, new_request_id
from sluice.testing import FaultProxy

from .test_worker import running, worker_for


async def until(predicate: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
    """Poll state that lives in Redis or in the worker (no event announces it), bounded."""
    deadline = time.monotonic() + within_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def completed(queue: Queue, job_id: str) -> bool:
    record = await queue.get_job(job_id)
    return record is not None and record.state == "completed"


async def active(queue: Queue) -> int:
    return int((await queue.counts())["active"])


async def test_1_a_handler_that_stalls_past_its_lease_runs_once_more_not_again_and_again(
    queue: Queue,
) -> None:
    """A blocking call (a GC pause, a sync library) freezes the event loop past the lease:
    the stalled run may not act after it (guard raises), and the job runs exactly once
    more, under a new token, and completes once."""
    runs: list[str] = []
    effects: list[str] = []
    refused: list[str] = []
    answered = asyncio.Event()

    async def handler(job: Job) -> None:
        runs.append(job.token)
        if len(runs) == 1:
            time.sleep(1.6)  # noqa: ASYNC251 - the fault under test: the loop is frozen
            try:
                await job.guard()
            except LeaseLostError:
                refused.append(job.token)
                raise
        effects.append(job.token)
        answered.set()

    job_id = await queue.enqueue("c1", {})
    worker = worker_for(queue, handler, lease_ms=1000, heartbeat_ms=250)
    async with running(worker):
        await asyncio.wait_for(answered.wait(), 10)
        await until(lambda: completed(queue, job_id))
    assert len(runs) == 2 and runs[0] != runs[1]
    assert refused == [runs[0]] and effects == [runs[1]]
    assert worker.busy == 0


async def test_one_run_per_job_and_token_the_stale_run_never_touches_the_new_one(
    queue: Queue,
) -> None:
    """A stalled run ending late must not pop, cancel or acknowledge for its successor of
    the same job (runs are keyed by (id, token))."""
    tokens: list[str] = []
    second_started = asyncio.Event()
    second_may_end = asyncio.Event()

    async def handler(job: Job) -> None:
        tokens.append(job.token)
        if len(tokens) == 1:
            time.sleep(1.3)  # noqa: ASYNC251 - freeze the loop past the lease
            return  # the stale run "succeeds" after its lease: its ack must be refused
        second_started.set()
        await second_may_end.wait()

    job_id = await queue.enqueue("c1", {})
    worker = worker_for(queue, handler, lease_ms=1000, heartbeat_ms=250)
    async with running(worker):
        await asyncio.wait_for(second_started.wait(), 10)
        assert worker.busy == 1  # the successor's entry survived the stale run's end
        second_may_end.set()
        await until(lambda: completed(queue, job_id))
    assert len(tokens) == 2


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", 6379) as p:
        yield p


async def test_2_a_worker_cut_off_from_redis_stops_before_its_effect(
    queue: Queue, redis_client: aioredis.Redis, proxy: FaultProxy
) -> None:
    """Worker A (through a proxy that is then cut) holds m1; B takes m1 and m2 after A's
    lease passes; A's late attempt to post is refused. Effects: B:m1, B:m2 only."""
    effects: list[tuple[str, str]] = []
    a_holds = asyncio.Event()
    a_may_go_on = asyncio.Event()
    a_outcome: list[str] = []
    b_done = asyncio.Event()

    db = redis_client.connection_pool.connection_kwargs.get("db", 0)
    cut_client = aioredis.Redis.from_url(f"redis://{proxy.url_host}/{db}")
    queue_a = Queue(queue.name, redis=cut_client, max_attempts=3)

    a_ended = asyncio.Event()

    async def handler_a(job: Job) -> None:
        try:
            a_holds.set()
            await a_may_go_on.wait()
            try:
                await job.fence()
            except LeaseLostError:
                a_outcome.append("refused")
                raise
            effects.append(("A", job.payload["m"]))
        finally:  # refused at its fence, or cancelled by its worker when the lease passed
            a_ended.set()

    async def handler_b(job: Job) -> None:
        await job.fence()
        effects.append(("B", job.payload["m"]))
        if len(effects) == 2:
            b_done.set()

    await queue.enqueue("conv", {"m": "m1"})
    worker_a = worker_for(queue_a, handler_a, lease_ms=1000, heartbeat_ms=250, concurrency=1)
    task_a = asyncio.create_task(worker_a.run())
    try:
        await asyncio.wait_for(a_holds.wait(), 5)
        await queue.enqueue("conv", {"m": "m2"})
        await proxy.refuse(True)
        await proxy.drop()
        async with running(worker_for(queue, handler_b, lease_ms=1000, heartbeat_ms=250)):
            await asyncio.wait_for(b_done.wait(), 10)
            a_may_go_on.set()  # A comes back to life after B answered both
            await asyncio.wait_for(a_ended.wait(), 10)
    finally:
        a_may_go_on.set()
        await proxy.refuse(False)
        worker_a.request_stop()
        await asyncio.wait_for(task_a, 20)
        await cut_client.aclose()
    assert effects == [("B", "m1"), ("B", "m2")]


async def test_3_a_repeated_reserve_returns_the_first_answer_and_charges_once(
    queue: Queue,
) -> None:
    """A reserve whose reply was lost and is re-sent (same request id) leases nothing
    more and charges no second attempt."""
    await queue.enqueue("a", {})
    await queue.enqueue("b", {})
    rid = new_request_id()
    first = await queue.reserve(1, worker_id="w", request_id=rid)
    again = await queue.reserve(1, worker_id="w", request_id=rid)
    assert [j.id for j in first.jobs] == [j.id for j in again.jobs]
    assert [j.token for j in first.jobs] == [j.token for j in again.jobs]
    counts = await queue.counts()
    assert counts["active"] == 1 and counts["waiting"] == 1
    record = await queue.get_job(first.jobs[0].id)
    assert record is not None and record.attempt == 1


async def test_3_a_repeated_enqueue_without_id_queues_once(queue: Queue) -> None:
    args = queue._enqueue_args("k", {"x": 1}, None, "normal", None, None)
    first = await queue.scripts.enqueue(queue._kv, args)
    again = await queue.scripts.enqueue(queue._kv, args)
    assert first == again
    assert (await queue.counts())["waiting"] == 1


async def test_3_a_repeated_complete_acts_once(queue: Queue) -> None:
    from sluice.queue.queue import Completion

    await queue.enqueue("a", {})
    await queue.enqueue("a", {})
    job = (await queue.reserve(1, worker_id="w")).jobs[0]
    rid = new_request_id()
    done = [Completion(job.id, job.token, {})]
    lost1, next1, _ = await queue.complete(done, reserve=1, worker_id="w", request_id=rid)
    lost2, next2, _ = await queue.complete(done, reserve=1, worker_id="w", request_id=rid)
    assert lost1 == lost2 == []
    assert [j.id for j in next1.jobs] == [j.id for j in next2.jobs]
    assert (await queue.counts())["completed"] == 1


async def test_3_prefetched_jobs_lost_in_a_crash_keep_their_attempts(queue: Queue) -> None:
    """Jobs that sat in a dead worker's prefetch buffer come back uncharged: attempts
    count runs, not reservations."""
    for key in ("a", "b", "c"):
        await queue.enqueue(key, {})
    taken = await queue.reserve(0, prefetch=3, worker_id="dies", lease_ms=100)
    assert len(taken.jobs) == 3 and all(j.prefetched for j in taken.jobs)
    await asyncio.sleep(0.15)  # let the leases run out: the worker "crashed"
    again = await queue.reserve(3, worker_id="w2")
    assert sorted(j.id for j in again.jobs) == sorted(j.id for j in taken.jobs)
    assert all(j.attempt == 1 for j in again.jobs)  # this is their first run


async def test_3_a_started_prefetched_job_is_charged_once(queue: Queue) -> None:
    await queue.enqueue("a", {})
    job = (await queue.reserve(0, prefetch=1, worker_id="w")).jobs[0]
    assert job.attempt == 0
    await queue.extend([job], started=[job])
    await queue.extend([job], started=[job])  # repeated: no second charge
    record = await queue.get_job(job.id)
    assert record is not None and record.attempt == 1


@pytest.mark.parametrize("charged_first", [False, True])
async def test_3_a_prefetched_job_finished_before_its_charge_is_charged_by_its_completion(
    queue: Queue, charged_first: bool
) -> None:
    """A short prefetched job's start rides on its acknowledgement (the worker leaves it
    out of the started list); sent both ways it is still charged once."""
    await queue.enqueue("a", {})
    job = (await queue.reserve(0, prefetch=1, worker_id="w")).jobs[0]
    started = [job] if charged_first else []
    lost, _, _ = await queue.complete(
        [Completion(job.id, job.token, {})], started=started, worker_id="w"
    )
    assert lost == []
    record = await queue.get_job(job.id)
    assert record is not None and record.state == "completed" and record.attempt == 1


async def test_handler_hops_travel_with_the_acknowledgement_and_bad_names_are_refused(
    queue: Queue,
) -> None:
    """Hops ride packed in complete's arguments ("hop=ms;hop=ms"): they arrive intact, and
    a name that could break the packing is refused before anything is sent."""
    await queue.enqueue("a", {})
    job = (await queue.reserve(1, worker_id="w")).jobs[0]
    job.mark("reply-sent.v2", 1_700_000_000_123.5)
    with pytest.raises(ValueError, match="hop name"):
        job.mark("a=b")
    with pytest.raises(ValueError, match="hop name"):
        await queue.complete([Completion(job.id, job.token, {"x,y": 1.0})], worker_id="w")
    assert (await queue.get_job(job.id)).state == "active"  # type: ignore[union-attr]
    lost, _, _ = await queue.complete([Completion(job.id, job.token, job.marks)], worker_id="w")
    record = await queue.get_job(job.id)
    assert lost == [] and record is not None and record.state == "completed"
    assert record.hops["reply-sent.v2"] == 1_700_000_000_123.5


async def test_a_run_that_ends_while_its_renewal_is_in_flight_is_not_reported_lost(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    """The heartbeat renews the leases of the runs it saw; a run that finished meanwhile
    may be acknowledged before the renewal reaches Redis, which then calls it "no longer
    ours". That is no lost lease: the worker must not warn that it cancels the run."""
    renewal_sent = asyncio.Event()
    acknowledged = asyncio.Event()
    real_extend, real_complete = queue.extend, queue.complete

    async def extend_after_the_ack(jobs: Any, lease_ms: int = 5000, **kw: Any) -> list[str]:
        if jobs:
            renewal_sent.set()
            await acknowledged.wait()  # the renewal reaches Redis after the completion
        return await real_extend(jobs, lease_ms, **kw)

    async def complete_and_tell(*args: Any, **kw: Any) -> Any:
        result = await real_complete(*args, **kw)
        if args[0]:
            acknowledged.set()
        return result

    async def handler(job: Job) -> None:
        await renewal_sent.wait()  # the heartbeat has taken this run into its renewal

    job_id = await queue.enqueue("c1", {})
    worker = worker_for(queue, handler, heartbeat_ms=100, lease_ms=2000)
    with (
        patch.object(queue, "extend", extend_after_the_ack),
        patch.object(queue, "complete", complete_and_tell),
    ):
        async with running(worker):
            await until(lambda: completed(queue, job_id))
            await worker.wait_heartbeat()  # the late renewal came back
    assert worker.processed == 1
    assert not [r for r in caplog.records if "cancelling its run" in r.getMessage()]


class FirstBlocks:
    """A handler whose first run waits until released: the worker's slot stays busy while
    the test fills, pauses, drains or cancels the prefetch buffer behind it."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.first_running = asyncio.Event()
        self.first_may_end = asyncio.Event()

    async def __call__(self, job: Job) -> None:
        self.started.append(job.key)
        if len(self.started) == 1:
            self.first_running.set()
            await self.first_may_end.wait()


def _prefetching_worker(queue: Queue, handler: object, **kw: object) -> Worker:
    options: dict[str, object] = {
        "concurrency": 1,
        "prefetch": 2,
        "lease_ms": 5000,
        "prefetch_warmup": 0,  # prefetch from the first reservation
    }
    options.update(kw)
    return worker_for(queue, handler, **options)  # type: ignore[arg-type]


async def test_4_pause_stops_buffered_starts_and_hands_them_back(queue: Queue) -> None:
    started: list[tuple[str, float]] = []
    first_running = asyncio.Event()
    first_may_end = asyncio.Event()

    async def handler(job: Job) -> None:
        started.append((job.key, time.monotonic()))
        if len(started) == 1:
            first_running.set()
            await first_may_end.wait()

    for key in ("a", "b", "c"):
        await queue.enqueue(key, {})
    worker = _prefetching_worker(queue, handler, prefetch_hold_s=30)
    async with running(worker):
        await asyncio.wait_for(first_running.wait(), 5)
        await until(lambda: _true(worker.buffered == 2))
        await queue.pause()
        paused_at = time.monotonic()
        await until(lambda: _true(worker.buffered == 0))  # the worker heard it
        heard_after = time.monotonic() - paused_at
        first_may_end.set()
        await asyncio.sleep(1.2)  # an observation window: nothing may start in it
        counts = await queue.counts()
    assert [k for k, at in started if at > paused_at] == []
    assert heard_after < 1.0
    assert counts["waiting"] == 2 and counts["active"] == 0  # handed back, not held


@pytest.mark.parametrize("how", ["drain", "cancel"])
async def test_4_drained_or_cancelled_buffered_jobs_never_start(queue: Queue, how: str) -> None:
    handler = FirstBlocks()
    await queue.enqueue("a", {})
    await queue.enqueue("b", {})
    worker = _prefetching_worker(queue, handler, prefetch_hold_s=30)
    async with running(worker):
        await asyncio.wait_for(handler.first_running.wait(), 5)
        await until(lambda: _true(worker.buffered == 1))  # b waits in the buffer
        removed = await (queue.drain() if how == "drain" else queue.cancel("b"))
        await until(lambda: _true(worker.buffered == 0))  # heard on the control channel
        handler.first_may_end.set()
        await asyncio.sleep(0.5)  # an observation window: b must not start in it
    assert removed == 1
    assert handler.started == ["a"]
    assert (await queue.counts())["waiting"] == 0


async def test_4_an_urgent_arrival_is_not_kept_behind_buffered_low_jobs(queue: Queue) -> None:
    """Buffered jobs start at most prefetch_hold_s after their reservation: a more urgent
    job that arrives later is not overtaken by buffered ones held longer than that."""
    handler = FirstBlocks()
    for key in ("first", "low1", "low2"):
        await queue.enqueue(key, {}, priority="low")
    worker = _prefetching_worker(queue, handler, prefetch_hold_s=0.2)
    async with running(worker):
        await asyncio.wait_for(handler.first_running.wait(), 5)
        await queue.enqueue("urgent", {}, priority="urgent")
        await asyncio.sleep(0.3)  # longer than the hold: the buffered low jobs are stale
        handler.first_may_end.set()
        await until(lambda: _true(len(handler.started) == 4))
    assert handler.started[1] == "urgent"


async def test_4_a_live_rate_limit_empties_the_buffer(queue: Queue) -> None:
    handler = FirstBlocks()
    for key in ("a", "b", "c"):
        await queue.enqueue(key, {})
    worker = _prefetching_worker(queue, handler, prefetch_hold_s=30)
    async with running(worker):
        await asyncio.wait_for(handler.first_running.wait(), 5)
        await until(lambda: _true(worker.buffered == 2))
        await queue.set_rate_limit(100)
        await until(lambda: _true(worker.buffered == 0))  # heard on the control channel
        await until(lambda: _equal(active(queue), 1))  # and handed back
        handler.first_may_end.set()
    await queue.set_rate_limit(None)


async def test_no_prefetch_for_long_handlers(queue: Queue) -> None:
    """A worker whose handlers have not yet shown themselves short keeps no buffer: jobs
    stay in the queue, where a pause, a drain or another worker can reach them."""
    running_now = asyncio.Event()
    may_end = asyncio.Event()

    async def handler(job: Job) -> None:
        running_now.set()
        await may_end.wait()

    for key in ("a", "b", "c"):
        await queue.enqueue(key, {})
    worker = worker_for(queue, handler, concurrency=1)
    async with running(worker):
        await asyncio.wait_for(running_now.wait(), 5)
        counts = await queue.counts()
        may_end.set()
    assert counts["active"] == 1 and counts["waiting"] == 2


async def _true(value: bool) -> bool:
    return value


async def _equal(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
