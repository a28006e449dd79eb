"""Bursts: a conversation's waiting messages reserved as one batch, answered in one turn,
acknowledged, retried, dead-lettered, recovered and handed back together, in order."""

from __future__ import annotations

import asyncio
import time

import pytest

from sluice import Completion, Job, Queue, Worker

from .test_failures import make_due
from .test_recovery import expire_lease


async def burst(queue: Queue, key: str, n: int) -> list[str]:
    return [await queue.enqueue(key, {"n": i}) for i in range(n)]


async def test_a_burst_is_reserved_as_one_batch_in_order(queue: Queue) -> None:
    ids = await burst(queue, "7:418", 3)
    other = await queue.enqueue("7:500", {})
    taken = await queue.reserve(10, worker_id="w", batch=10, rate_limit=30)
    by_key = {j.key: j for j in taken.jobs}
    assert [m.id for m in by_key["7:418"].members] == ids
    assert [m.id for m in by_key["7:500"].members] == [other]
    assert await queue.redis.zcard(queue.keys.rate) == 2  # one start per turn
    assert (await queue.counts())["active"] == 4


async def test_batch_limit_leaves_the_rest_waiting(queue: Queue) -> None:
    ids = await burst(queue, "c", 5)
    job = (await queue.reserve(1, worker_id="w", batch=2)).jobs[0]
    assert [m.id for m in job.members] == ids[:2]
    assert (await queue.counts())["waiting"] == 3


async def test_completing_a_batch_keeps_each_timeline_and_moves_on(queue: Queue) -> None:
    ids = await burst(queue, "c", 3)
    job = (await queue.reserve(1, worker_id="w", batch=10)).jobs[0]
    sent = time.time() * 1000
    nxt_id = await queue.enqueue("c", {"n": "later"})
    lost, nxt, finished = await queue.complete(
        [Completion(m.id, m.token, {"reply_sent": sent}) for m in job.members],
        reserve=1,
        worker_id="w",
        batch=10,
    )
    assert lost == [] and len(finished) == 3
    assert [j.id for j in nxt.jobs] == [nxt_id]
    for job_id in ids:
        record = await queue.get_job(job_id)
        assert record is not None and record.state == "completed"
        assert record.hops["reply_sent"] == pytest.approx(sent, abs=0.001)


async def test_failed_batch_retries_together_in_order(queue: Queue) -> None:
    ids = await burst(queue, "c", 3)
    job = (await queue.reserve(1, worker_id="w", batch=10)).jobs[0]
    assert await queue.fail(job, "llm down", backoff_ms=60_000) == "retry"
    counts = await queue.counts()
    assert (counts["delayed"], counts["waiting"], counts["active"]) == (1, 2, 0)
    assert (await queue.reserve(5, worker_id="w", batch=10)).jobs == []
    await make_due(queue, "c")
    again = (await queue.reserve(5, worker_id="w", batch=10)).jobs[0]
    assert [m.id for m in again.members] == ids
    assert [m.attempt for m in again.members] == [2, 2, 2]


async def test_dead_batch_dead_letters_all_and_the_lane_moves_on(queue: Queue) -> None:
    ids = await burst(queue, "c", 2)
    job = (await queue.reserve(1, worker_id="w", batch=2)).jobs[0]
    later = await queue.enqueue("c", {"n": "later"})
    assert await queue.fail(job, "bad", backoff_ms=0, retryable=False) == "dead"
    assert sorted(d.id for d in await queue.dead_letters()) == sorted(ids)
    assert [j.id for j in (await queue.reserve(1, worker_id="w", batch=2)).jobs] == [later]


async def test_expired_batch_is_recovered_whole_in_order(queue: Queue) -> None:
    ids = await burst(queue, "c", 3)
    job = (await queue.reserve(1, worker_id="dead", batch=10)).jobs[0]
    await expire_lease(queue, job.members[1].id)  # any member's expiry recovers the batch
    again = (await queue.reserve(1, worker_id="w2", batch=10)).jobs[0]
    assert [m.id for m in again.members] == ids
    assert again.attempt == 2


async def test_released_batch_keeps_order_and_attempts(queue: Queue) -> None:
    ids = await burst(queue, "c", 3)
    job = (await queue.reserve(1, worker_id="w", batch=10)).jobs[0]
    assert await queue.release([job]) == 3
    again = (await queue.reserve(1, worker_id="w", batch=10)).jobs[0]
    assert [m.id for m in again.members] == ids and again.attempt == 1


async def test_worker_answers_a_burst_in_one_turn(queue: Queue) -> None:
    first_started = asyncio.Event()
    release_first = asyncio.Event()
    turns: list[list[int]] = []
    all_done = asyncio.Event()

    async def handler(job: Job) -> None:
        turns.append([m.payload["n"] for m in job.members])
        if len(turns) == 1:
            first_started.set()
            await release_first.wait()
        job.mark("reply_sent")
        if sum(len(t) for t in turns) == 4:
            all_done.set()

    await queue.enqueue("c", {"n": 0})
    worker = Worker(queue, handler, batch_size=10, handle_signals=False, idle_poll_s=0.1)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(first_started.wait(), 10)
        for n in (1, 2, 3):  # the customer types three more lines meanwhile
            await queue.enqueue("c", {"n": n})
        release_first.set()
        await asyncio.wait_for(all_done.wait(), 10)
    finally:
        await worker.stop()
        await task
    assert turns == [[0], [1, 2, 3]]
    assert (await queue.counts())["completed"] == 4
