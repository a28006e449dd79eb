"""The worker runtime in-process: shutdown, live settings, registry, EDF fairness."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sluice import EnqueueRequest, Job, Queue, Worker
from sluice.chatwoot.client import may_still_land
from sluice.worker import registry
from sluice.worker.shutdown import HANDED_BACK_MID_TURN


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        await worker.stop()
        await task


def worker_for(queue: Queue, handler: Callable[[Job], Awaitable[None]], **kw: object) -> Worker:
    options: dict[str, object] = {"concurrency": 10, "handle_signals": False, "idle_poll_s": 0.2}
    options.update(kw)
    return Worker(queue, handler, **options)  # type: ignore[arg-type]


async def test_worker_processes_all_and_marks_hops(queue: Queue) -> None:
    seen: list[str] = []
    all_done = asyncio.Event()

    async def handler(job: Job) -> None:
        job.mark("reply_sent")
        seen.append(job.id)
        if len(seen) == 20:
            all_done.set()

    ids = await queue.enqueue_many([EnqueueRequest(key=f"c{n % 4}", payload={}) for n in range(20)])
    async with running(worker_for(queue, handler)):
        await asyncio.wait_for(all_done.wait(), 10)
    assert sorted(seen, key=int) == sorted(ids, key=int)
    record = await queue.get_job(ids[0])
    assert record is not None and record.state == "completed"
    assert record.hops["enqueued"] <= record.hops["reserved"] <= record.hops["reply_sent"]
    assert record.hops["reply_sent"] <= record.hops["completed"] + 1  # two clocks, one host


async def test_shutdown_finishes_within_grace_and_hands_back_the_rest(queue: Queue) -> None:
    quick_may_finish = asyncio.Event()
    both_started = asyncio.Event()
    started: list[str] = []

    async def handler(job: Job) -> None:
        started.append(job.key)
        if len(started) == 2:
            both_started.set()
        if job.key == "quick":
            await quick_may_finish.wait()
        else:
            await asyncio.Event().wait()  # never finishes by itself

    await queue.enqueue("quick", {})
    stuck_id = await queue.enqueue("stuck", {})
    worker = worker_for(queue, handler, shutdown_grace_s=0.5)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(both_started.wait(), 10)
    worker.request_stop()
    quick_may_finish.set()
    await asyncio.wait_for(task, 10)
    counts = await queue.counts()
    assert (counts["completed"], counts["active"], counts["waiting"]) == (1, 0, 1)
    handed_back = (await queue.reserve(1, worker_id="next")).jobs
    assert [j.id for j in handed_back] == [stuck_id]
    assert handed_back[0].attempt == 1  # no attempt penalty
    # Cut short mid-turn: whatever it was sending may still land, and the next run looks
    # twice before answering again (sluice.chatwoot.client.may_still_land).
    assert handed_back[0].last_error == HANDED_BACK_MID_TURN
    assert may_still_land(handed_back[0].last_error)


async def test_prefetched_jobs_are_handed_back_without_a_reason(queue: Queue) -> None:
    """Jobs that never started did nothing that could land: no recorded error."""
    job_id = await queue.enqueue("never-started", {})
    taken = (await queue.reserve(1, worker_id="w")).jobs
    assert await queue.release(taken) == 1
    again = (await queue.reserve(1, worker_id="w2")).jobs
    assert [j.id for j in again] == [job_id] and again[0].last_error is None


async def test_live_concurrency_change_applies_without_restart(queue: Queue) -> None:
    release = asyncio.Event()
    three_running = asyncio.Event()
    active = 0

    async def handler(job: Job) -> None:
        nonlocal active
        active += 1
        if active >= 3:
            three_running.set()
        await release.wait()
        active -= 1

    await queue.enqueue_many([EnqueueRequest(key=f"c{n}", payload={}) for n in range(5)])
    worker = worker_for(queue, handler, concurrency=1, heartbeat_ms=200)
    async with running(worker):
        await queue.set_concurrency(3)
        await asyncio.wait_for(three_running.wait(), 2.0)  # the bound: 2 s
        assert worker.concurrency == 3
        release.set()


async def test_worker_registers_itself_with_utilization(queue: Queue) -> None:
    worker = worker_for(queue, lambda job: asyncio.sleep(0), heartbeat_ms=100)
    async with running(worker):
        await asyncio.wait_for(worker.wait_heartbeat(), 5)
        workers = await registry.live_workers(queue.redis, queue.keys)
        assert len(workers) == 1
        assert workers[0]["id"] == worker.id and workers[0]["slots"] == 10
        assert 0.0 <= workers[0]["utilization"] <= 1.0
    assert await registry.live_workers(queue.redis, queue.keys) == []


async def test_new_conversation_is_not_starved_by_a_flood(queue: Queue) -> None:
    """EDF: with 500 messages queued for one conversation, a new conversation's first
    message starts among the next 2 starts."""
    starts: list[str] = []
    injected_at: int | None = None
    newcomer_started = asyncio.Event()

    async def handler(job: Job) -> None:
        nonlocal injected_at
        starts.append(job.key)
        if job.key == "newcomer":
            newcomer_started.set()
        elif len(starts) == 5:
            await queue.enqueue("newcomer", {"text": "hello?"})
            injected_at = len(starts)

    await queue.enqueue_many([EnqueueRequest(key="flood", payload={"n": n}) for n in range(500)])
    async with running(worker_for(queue, handler)):
        await asyncio.wait_for(newcomer_started.wait(), 10)
    assert injected_at is not None
    position = starts.index("newcomer") - injected_at + 1
    assert position <= 2, f"newcomer started {position} starts after it arrived"


async def test_failures_retry_with_backoff_then_dead_letter(queue: Queue) -> None:
    attempts: dict[str, int] = {}
    finished = asyncio.Event()

    async def handler(job: Job) -> None:
        attempts[job.key] = job.attempt
        if job.key == "poison":
            if job.attempt == job.max_attempts:
                finished.set()
            raise RuntimeError("always fails")

    await queue.enqueue("poison", {})
    async with running(worker_for(queue, handler, retry_base_ms=5, retry_max_ms=20)):
        await asyncio.wait_for(finished.wait(), 10)
    dead = await queue.dead_letters()
    assert [d.key for d in dead] == ["poison"]
    assert dead[0].error == "RuntimeError: always fails"
    assert attempts["poison"] == 3


async def test_worker_survives_a_redis_error_while_idle(queue: Queue) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    failed = asyncio.Event()
    handled = asyncio.Event()
    real = queue.blocking_client

    def flaky(**kwargs: Any) -> Any:
        client = real(**kwargs)
        original = client.blpop

        async def blpop(*args: Any, **kwargs: Any) -> Any:
            if not failed.is_set():
                failed.set()
                raise RedisConnectionError("connection reset while blocked")
            return await original(*args, **kwargs)

        client.blpop = blpop  # type: ignore[method-assign]
        return client

    queue.blocking_client = flaky  # type: ignore[method-assign]

    async def handler(job: Job) -> None:
        handled.set()

    worker = worker_for(queue, handler)
    async with running(worker) as task:
        await asyncio.wait_for(failed.wait(), 10)
        await queue.enqueue("c", {})
        await asyncio.wait_for(handled.wait(), 10)
        assert not task.done()


async def test_publishing_prunes_workers_gone_for_a_minute(queue: Queue) -> None:
    """The index is pruned by every heartbeat (by Redis's clock), not only when read."""
    seconds, _ = await queue.redis.time()
    await queue.redis.zadd(queue.keys.workers, {"gone": int(seconds) - 3600})
    info = registry.WorkerInfo(
        id="alive",
        host="h",
        pid=1,
        queue=queue.name,
        slots=1,
        busy=0,
        utilization=0.0,
        throughput=0.0,
        processed=0,
        failed=0,
        rate_limit=0,
        started_at=0.0,
        heartbeat_at=0.0,
    )
    await registry.publish(queue.redis, queue.keys, info, ttl_ms=5000)
    members = await queue.redis.zrange(queue.keys.workers, 0, -1, withscores=True)
    assert [m for m, _ in members] == [b"alive"]
    assert abs(members[0][1] - int(seconds)) < 5  # Redis's clock, not heartbeat_at
