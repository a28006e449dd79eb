"""Bursts: a conversation's waiting messages reserved as one batch, answered in one turn,
acknowledged, dead-lettered, recovered once and handed back together, in order; after a
failure (or a second expired lease) its jobs are retried one at a time (solo), in order."""

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


async def take(queue: Queue) -> Job:
    """The next turn of the test's one conversation (batched as the pipeline batches)."""
    taken = (await queue.reserve(1, worker_id="w", batch=10)).jobs
    assert len(taken) == 1, taken
    return taken[0]


async def finish(queue: Queue, job: Job) -> list[Job]:
    """Complete a turn and reserve the conversation's next one in the same call."""
    lost, nxt, _ = await queue.complete(
        [Completion(m.id, m.token, {}) for m in job.members], reserve=1, worker_id="w", batch=10
    )
    assert lost == []
    return nxt.jobs


def turn(job: Job) -> list[tuple[str, int]]:
    return [(m.id, m.attempt) for m in job.members]


async def test_failed_batch_is_retried_one_job_at_a_time_in_order(queue: Queue) -> None:
    ids = await burst(queue, "c", 3)
    job = await take(queue)
    assert await queue.fail(job, "llm down", backoff_ms=60_000) == "retry"
    new = await burst(queue, "c", 2)  # the customer writes again meanwhile
    counts = await queue.counts()
    assert (counts["delayed"], counts["waiting"], counts["active"]) == (1, 4, 0)
    assert (await queue.reserve(5, worker_id="w", batch=10)).jobs == []
    await make_due(queue, "c")
    again = await take(queue)
    assert turn(again) == [(ids[0], 2)] and again.last_error == "llm down"
    second = (await finish(queue, again))[0]
    assert turn(second) == [(ids[1], 2)]
    third = (await finish(queue, second))[0]
    assert turn(third) == [(ids[2], 2)]
    fresh = (await finish(queue, third))[0]
    assert turn(fresh) == [(new[0], 1), (new[1], 1)]  # new lines are batched again
    assert await finish(queue, fresh) == []
    for job_id in [*ids, *new]:
        assert not await queue.redis.hexists(queue.keys.job(job_id), "solo")
    assert (await queue.counts())["completed"] == 5


async def test_innocent_line_batched_with_a_poison_line_is_answered(queue: Queue) -> None:
    """Review finding: lane [L, P] reserved as one batch, P failing its handler every time:
    the batch was retried whole until both were exhausted, and L was dead-lettered with P.
    Retried one at a time, L is answered, P uses up its own attempts, and the line after P
    is answered after P is dead-lettered."""
    innocent, poison = await burst(queue, "c", 2)
    job = await take(queue)
    assert turn(job) == [(innocent, 1), (poison, 1)]
    assert await queue.fail(job, "poison", backoff_ms=0) == "retry"
    after = await queue.enqueue("c", {"n": "after"})
    await make_due(queue, "c")
    alone = await take(queue)
    assert turn(alone) == [(innocent, 2)]
    job = (await finish(queue, alone))[0]
    for attempt in (2, 3):  # the fixture's queue allows 3 attempts
        assert turn(job) == [(poison, attempt)]
        outcome = await queue.fail(job, "poison", backoff_ms=0)
        await make_due(queue, "c")
        if outcome == "retry":
            job = await take(queue)
    assert outcome == "dead"
    assert [(d.id, d.attempt) for d in await queue.dead_letters()] == [(poison, 3)]
    last = await take(queue)
    assert turn(last) == [(after, 1)]
    assert await finish(queue, last) == []
    record = await queue.get_job(innocent)
    assert record is not None and record.state == "completed"
    counts = await queue.counts()
    assert (counts["completed"], counts["dead"], counts["waiting"]) == (2, 1, 0)


async def test_dead_batch_dead_letters_all_and_the_lane_moves_on(queue: Queue) -> None:
    ids = await burst(queue, "c", 2)
    job = (await queue.reserve(1, worker_id="w", batch=2)).jobs[0]
    later = await queue.enqueue("c", {"n": "later"})
    assert await queue.fail(job, "bad", backoff_ms=0, retryable=False) == "dead"
    assert sorted(d.id for d in await queue.dead_letters()) == sorted(ids)
    assert [j.id for j in (await queue.reserve(1, worker_id="w", batch=2)).jobs] == [later]


async def test_expired_batch_is_recovered_whole_in_order(queue: Queue) -> None:
    """A first expiry is most often its worker's death, not its lines' fault: the batch comes
    back as it was (one turn, one reply within the SLA)."""
    ids = await burst(queue, "c", 3)
    job = (await queue.reserve(1, worker_id="dead", batch=10)).jobs[0]
    await expire_lease(queue, job.members[1].id)  # any member's expiry recovers the batch
    again = (await queue.reserve(1, worker_id="w2", batch=10)).jobs[0]
    assert [m.id for m in again.members] == ids
    assert again.attempt == 2 and again.last_error == "lease expired"


async def test_batch_expiring_again_is_recovered_one_job_at_a_time(queue: Queue) -> None:
    """A turn whose lease expires again (a line that kills its worker) is retried one job at
    a time, like a failed one."""
    ids = await burst(queue, "c", 3)
    for worker in ("dies", "dies too"):
        job = (await queue.reserve(1, worker_id=worker, batch=10)).jobs[0]
        await expire_lease(queue, job.id)
    again = await take(queue)
    assert turn(again) == [(ids[0], 3)] and again.last_error == "lease expired"
    second = (await finish(queue, again))[0]
    assert turn(second) == [(ids[1], 3)]
    third = (await finish(queue, second))[0]
    assert turn(third) == [(ids[2], 3)]
    assert await finish(queue, third) == []


# ------------------------------------------------- a batch's last attempt (bury_exhausted)
# Failed jobs are retried one at a time, so a batch of more than one reaches its leader's
# last attempt only with a `max` of 1 or 2, or with `max` differing across it: it is stored
# per job, so a change of SLUICE_MAX_ATTEMPTS between enqueues makes a leader with fewer
# attempts than the lines behind it. These tests build such batches.


async def events(queue: Queue, kind: str) -> list[str]:
    entries = await queue.redis.xrange(queue.keys.events)
    return [e[b"job"].decode() for _, e in entries if e[b"type"].decode() == kind]


async def counted(queue: Queue, field: str) -> int:
    """A per-second counter summed over every second (SCAN is fine in a test)."""
    total = 0
    async for key in queue.redis.scan_iter(match=queue.keys.stats(0)[:-1] + "*"):
        total += int(await queue.redis.hget(key, field) or 0)
    return total


async def deadline_of(queue: Queue, job_id: str) -> float:
    raw = await queue.redis.hget(queue.keys.job(job_id), "deadline")
    assert raw is not None
    return float(raw)


async def test_last_attempt_failure_requeues_survivors_like_a_retry(queue: Queue) -> None:
    """Review findings: the survivor of a batch's last attempt was logged as a retry but not
    counted as one, and it became ready with a fresh deadline (now + target) instead of
    the turn's, which a retried customer keeps."""
    poison = await queue.enqueue("c", {"n": 0}, max_attempts=1)
    later = await queue.enqueue("c", {"n": 1})
    job = await take(queue)
    assert turn(job) == [(poison, 1), (later, 1)]
    assert await queue.fail(job, "boom", backoff_ms=60_000) == "dead"
    assert [d.id for d in await queue.dead_letters()] == [poison]
    assert await events(queue, "retry") == [later]
    assert await counted(queue, "retried") == 1
    total = await queue.redis.hgetall(queue.keys.prefix + "mon:total")
    assert (total[b"fail"], total[b"retry"], total[b"dead"]) == (b"1", b"1", b"1")
    record = await queue.get_job(later)
    assert record is not None and record.error == "boom" and "failed" in record.hops
    assert await queue.redis.hget(queue.keys.job(later), "solo") == b"1"
    turn_deadline = await deadline_of(queue, poison)
    assert await deadline_of(queue, later) == turn_deadline
    ready_at = await queue.redis.zscore(queue.keys.ready, "c")
    assert ready_at == pytest.approx(turn_deadline, abs=0.001)
    again = await take(queue)  # at once: the survivor did not fail on its own
    assert turn(again) == [(later, 2)]


async def test_last_attempt_lease_expiry_requeues_survivors_like_a_recovery(
    queue: Queue,
) -> None:
    """The same on the recovery path: counted as recovered, the same error and hops as a
    normal recovery (no `failed` hop: nothing failed), and the turn's deadline."""
    poison = await queue.enqueue("c", {"n": 0}, max_attempts=1)
    later = await queue.enqueue("c", {"n": 1})
    job = (await queue.reserve(1, worker_id="dies", batch=10)).jobs[0]
    assert turn(job) == [(poison, 1), (later, 1)]
    await expire_lease(queue, poison)
    assert (await queue.reserve(0, worker_id="w2", batch=10)).jobs == []  # recovers only
    dead = await queue.dead_letters()
    assert [(d.id, d.error) for d in dead] == [(poison, "lease expired on the last attempt (1)")]
    assert await events(queue, "recovered") == [later]
    assert await counted(queue, "recovered") == 1
    record = await queue.get_job(later)
    assert record is not None and record.state == "waiting"
    assert record.error == "lease expired" and "failed" not in record.hops
    turn_deadline = await deadline_of(queue, poison)
    assert await deadline_of(queue, later) == turn_deadline
    ready_at = await queue.redis.zscore(queue.keys.ready, "c")
    assert ready_at == pytest.approx(turn_deadline, abs=0.001)
    assert turn(await take(queue)) == [(later, 2)]


async def test_last_attempt_buries_only_the_leading_exhausted_run(queue: Queue) -> None:
    """Review finding: with `max` mixed across a batch, a member behind a survivor could be
    buried while the survivor still waited, so the conversation moved past a line before
    answering the one in front of it. Only the leading run of exhausted members is buried;
    a later exhausted member gets one attempt alone, after the survivor, and is buried on
    its own count."""
    first = await queue.enqueue("c", {"n": 0}, max_attempts=1)
    middle = await queue.enqueue("c", {"n": 1}, max_attempts=3)
    last = await queue.enqueue("c", {"n": 2}, max_attempts=1)
    job = await take(queue)
    assert turn(job) == [(first, 1), (middle, 1), (last, 1)]
    assert await queue.fail(job, "boom", backoff_ms=0) == "dead"
    assert [d.id for d in await queue.dead_letters()] == [first]
    lane = await queue.redis.lrange(queue.keys.lane("c"), 0, -1)
    assert [x.decode() for x in lane] == [middle, last]
    job = await take(queue)
    assert turn(job) == [(middle, 2)]
    job = (await finish(queue, job))[0]
    assert turn(job) == [(last, 2)]
    assert await queue.fail(job, "boom", backoff_ms=0) == "dead"
    assert [d.id for d in await queue.dead_letters()] == [last, first]  # newest first
    for job_id in (first, middle, last):
        assert not await queue.redis.hexists(queue.keys.job(job_id), "solo")


async def test_released_batch_keeps_order_and_attempts(queue: Queue) -> None:
    ids = await burst(queue, "c", 3)
    job = (await queue.reserve(1, worker_id="w", batch=10)).jobs[0]
    assert await queue.release([job]) == 3
    again = (await queue.reserve(1, worker_id="w", batch=10)).jobs[0]
    assert [m.id for m in again.members] == ids and again.attempt == 1


async def test_a_solo_job_handed_back_stays_solo(queue: Queue) -> None:
    ids = await burst(queue, "c", 2)
    assert await queue.fail(await take(queue), "boom", backoff_ms=0) == "retry"
    await make_due(queue, "c")
    job = await take(queue)
    assert turn(job) == [(ids[0], 2)]
    assert await queue.release([job]) == 1  # a hand-back neither marks nor clears solo
    assert turn(await take(queue)) == [(ids[0], 2)]


async def test_a_batch_stops_before_a_solo_job(queue: Queue) -> None:
    """Defensive: solo jobs only ever sit at the head of a lane (they are requeued there),
    but a batch taken from a lane must never swallow one."""
    ids = await burst(queue, "c", 3)
    await queue.redis.hset(queue.keys.job(ids[1]), "solo", "1")
    job = await take(queue)
    assert turn(job) == [(ids[0], 1)]
    second = (await finish(queue, job))[0]
    assert turn(second) == [(ids[1], 1)]
    assert turn((await finish(queue, second))[0]) == [(ids[2], 1)]


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
