"""Pause, resume, drain, cancel, counts and the rate limit inside one process."""

from __future__ import annotations

from sluice import Queue
from sluice.queue.queue import DEFAULT_RATE_GUARD_MS


async def test_pause_stops_starts_and_resume_wakes_workers(queue: Queue) -> None:
    await queue.enqueue("a", {})
    assert await queue.pause()
    assert not await queue.pause()  # already paused
    taken = await queue.reserve(5, worker_id="w")
    assert taken.status == "paused" and taken.jobs == []
    assert (await queue.counts())["paused"] is True
    await queue.redis.delete(queue.keys.wake)
    assert await queue.resume()
    assert await queue.redis.llen(queue.keys.wake) > 0  # idle workers are woken
    assert len((await queue.reserve(5, worker_id="w")).jobs) == 1


async def test_drain_removes_waiting_and_delayed_but_not_running(queue: Queue) -> None:
    for n in range(3):
        await queue.enqueue("a", {"n": n})
    await queue.enqueue("b", {})
    await queue.enqueue("c", {})
    running, failing, other = (await queue.reserve(3, worker_id="w")).jobs
    await queue.fail(failing, "x", backoff_ms=60_000)
    removed = await queue.drain()
    assert removed == 3  # the two followers of a, and the delayed retry of b
    counts = await queue.counts()
    assert counts["waiting"] == 0 and counts["delayed"] == 0 and counts["active"] == 2
    assert (running.key, failing.key, other.key) == ("a", "b", "c")


async def test_cancel_removes_one_conversation_only(queue: Queue) -> None:
    for n in range(3):
        await queue.enqueue("7:418", {"n": n})
    await queue.enqueue("7:419", {})
    assert await queue.cancel("7:418", reason="resolved") == 3
    taken = (await queue.reserve(5, worker_id="w")).jobs
    assert [j.key for j in taken] == ["7:419"]


async def test_counts_report_oldest_waiting_age(queue: Queue) -> None:
    await queue.enqueue("a", {})
    # Make the waiting job look 5 s old.
    job_id = (await queue.redis.zrange(queue.keys.waiting, 0, 0))[0]
    score = await queue.redis.zscore(queue.keys.waiting, job_id)
    assert score is not None
    await queue.redis.zadd(queue.keys.waiting, {job_id: score - 5000})
    counts = await queue.counts()
    assert 5000 <= counts["oldest_waiting_age_ms"] < 6000


async def test_rate_limit_caps_starts_per_second(queue: Queue) -> None:
    for n in range(50):
        await queue.enqueue(f"c{n}", {})
    first = await queue.reserve(40, worker_id="w", rate_limit=30)
    assert len(first.jobs) == 30
    second = await queue.reserve(40, worker_id="w", rate_limit=30)
    assert second.status == "rate" and second.jobs == []
    assert 0 < second.retry_after_ms <= 1000 + DEFAULT_RATE_GUARD_MS


async def test_live_rate_limit_wins_over_worker_default(queue: Queue) -> None:
    for n in range(20):
        await queue.enqueue(f"c{n}", {})
    await queue.set_rate_limit(5)
    assert (await queue.live_settings())["rate_limit"] == 5
    assert len((await queue.reserve(20, worker_id="w", rate_limit=0)).jobs) == 5
    await queue.set_rate_limit(None)
    assert (await queue.live_settings())["rate_limit"] is None
