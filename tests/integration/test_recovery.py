"""Leases: heartbeats extend them; expired ones come back at the head of their lane."""

from __future__ import annotations

from sluice import Completion, Queue


async def expire_lease(queue: Queue, job_id: str) -> None:
    """Make a lease look expired without waiting for the clock."""
    await queue.redis.zadd(queue.keys.active, {job_id: 0}, xx=True)


async def test_expired_lease_returns_job_to_head_with_attempt_plus_one(queue: Queue) -> None:
    first = await queue.enqueue("7:418", {"n": 0})
    await queue.enqueue("7:418", {"n": 1})
    job = (await queue.reserve(1, worker_id="dead-worker")).jobs[0]
    await expire_lease(queue, first)
    again = (await queue.reserve(5, worker_id="w2")).jobs
    assert [j.id for j in again] == [first]
    assert again[0].attempt == 2
    assert again[0].deadline_ms == job.deadline_ms  # keeps its place in EDF order
    # The dead worker's late acknowledgement is refused: the job is w2's now.
    lost, _, _ = await queue.complete([Completion(job.id, job.token, {})], worker_id="dead-worker")
    assert lost == [first]
    lost, _, _ = await queue.complete([Completion(first, again[0].token, {})], worker_id="w2")
    assert lost == []


async def test_extend_keeps_lease_and_reports_lost_ones(queue: Queue) -> None:
    await queue.enqueue("a", {})
    await queue.enqueue("b", {})
    a, b = (await queue.reserve(2, worker_id="w", lease_ms=1000)).jobs
    await expire_lease(queue, b.id)
    await queue.reserve(0, worker_id="other")  # recovers b
    lost = await queue.extend([a, b], lease_ms=60_000)
    assert lost == [b.id]
    lease = await queue.redis.zscore(queue.keys.active, a.id)
    assert lease is not None and lease - a.hops["reserved"] > 50_000


async def test_last_attempt_lease_expiry_dead_letters(queue: Queue) -> None:
    job_id = await queue.enqueue("7:418", {}, max_attempts=1)
    await queue.enqueue("7:418", {"next": True})
    await queue.reserve(1, worker_id="w")
    await expire_lease(queue, job_id)
    nxt = (await queue.reserve(1, worker_id="w")).jobs
    assert [j.payload for j in nxt] == [{"next": True}]  # the lane moved on
    dead = await queue.dead_letters()
    assert [d.id for d in dead] == [job_id]
    assert dead[0].error is not None and "lease expired" in dead[0].error


async def test_release_hands_back_without_attempt_penalty(queue: Queue) -> None:
    job_id = await queue.enqueue("7:418", {})
    job = (await queue.reserve(1, worker_id="w")).jobs[0]
    assert await queue.release([job]) == 1
    again = (await queue.reserve(1, worker_id="w")).jobs[0]
    assert again.id == job_id and again.attempt == 1
