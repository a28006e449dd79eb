"""Failures: retries wait at the head of the lane; dead letters after the last attempt."""

from __future__ import annotations

from sluice import Queue


async def make_due(queue: Queue, key: str) -> None:
    """Skip the retry backoff without waiting for the clock."""
    await queue.redis.zadd(queue.keys.delayed, {key: 0}, xx=True)


async def test_failed_job_retries_and_its_lane_waits(queue: Queue) -> None:
    first = await queue.enqueue("7:418", {"n": 0})
    await queue.enqueue("7:418", {"n": 1})
    job = (await queue.reserve(1, worker_id="w")).jobs[0]
    assert await queue.fail(job, "boom", backoff_ms=60_000) == "retry"
    counts = await queue.counts()
    assert counts["delayed"] == 1 and counts["waiting"] == 1
    assert (await queue.reserve(5, worker_id="w")).jobs == []  # n=1 must not overtake
    await make_due(queue, "7:418")
    again = (await queue.reserve(5, worker_id="w")).jobs
    assert [j.id for j in again] == [first]
    assert again[0].attempt == 2 and again[0].last_error == "boom"


async def test_dead_letter_after_max_attempts_and_lane_moves_on(queue: Queue) -> None:
    poison = await queue.enqueue("7:418", {"poison": True})
    await queue.enqueue("7:418", {"n": 1})
    for attempt in range(1, 4):  # the fixture's queue allows 3 attempts
        job = (await queue.reserve(1, worker_id="w")).jobs[0]
        assert job.id == poison and job.attempt == attempt
        outcome = await queue.fail(job, f"boom {attempt}", backoff_ms=0)
        await make_due(queue, "7:418")
    assert outcome == "dead"
    nxt = (await queue.reserve(1, worker_id="w")).jobs
    assert [j.payload for j in nxt] == [{"n": 1}]
    dead = await queue.dead_letters()
    assert [(d.id, d.error, d.attempt) for d in dead] == [(poison, "boom 3", 3)]


async def test_non_retryable_error_dead_letters_at_once(queue: Queue) -> None:
    await queue.enqueue("7:418", {})
    job = (await queue.reserve(1, worker_id="w")).jobs[0]
    assert await queue.fail(job, "bad input", backoff_ms=1000, retryable=False) == "dead"
    assert (await queue.counts())["dead"] == 1


async def test_retry_and_purge_dead_letters(queue: Queue) -> None:
    for key in ("a", "b"):
        await queue.enqueue(key, {})
    for job in (await queue.reserve(2, worker_id="w")).jobs:
        await queue.fail(job, "nope", backoff_ms=0, retryable=False)
    dead = await queue.dead_letters()
    assert len(dead) == 2
    assert await queue.retry_dead(dead[0].id)
    assert not await queue.retry_dead(dead[0].id)  # no longer a dead letter
    again = (await queue.reserve(5, worker_id="w")).jobs
    assert [j.id for j in again] == [dead[0].id] and again[0].attempt == 1
    assert await queue.purge_dead() == 1
    assert await queue.dead_letters() == []
    assert await queue.get_job(dead[1].id) is None


async def test_stale_failure_report_changes_nothing(queue: Queue) -> None:
    await queue.enqueue("7:418", {})
    job = (await queue.reserve(1, worker_id="w")).jobs[0]
    await queue.release([job])
    assert await queue.fail(job, "late", backoff_ms=0) == "lost"
    assert (await queue.counts())["waiting"] == 1
