"""Lanes and the ready set: one job per conversation in flight, earliest deadline first."""

from __future__ import annotations

from sluice import Completion, Queue


async def test_at_most_one_job_of_a_conversation_in_flight(queue: Queue) -> None:
    for n in range(5):
        await queue.enqueue("7:418", {"n": n})
    await queue.enqueue("7:500", {"n": 0})
    taken = await queue.reserve(10, worker_id="w")
    assert sorted(j.key for j in taken.jobs) == ["7:418", "7:500"]
    again = await queue.reserve(10, worker_id="w")
    assert again.jobs == []  # the lane of 7:418 waits for its running job


async def test_completion_releases_the_next_message_in_order(queue: Queue) -> None:
    for n in range(3):
        await queue.enqueue("7:418", {"n": n})
    seen = []
    taken = await queue.reserve(1, worker_id="w")
    while taken.jobs:
        job = taken.jobs[0]
        seen.append(job.payload["n"])
        _, taken, _ = await queue.complete(
            [Completion(job.id, job.token, {})], reserve=1, worker_id="w"
        )
    assert seen == [0, 1, 2]
    assert (await queue.counts())["completed"] == 3


async def test_priority_classes_order_by_deadline(queue: Queue) -> None:
    await queue.enqueue("low", {}, priority="low")
    await queue.enqueue("normal", {}, priority="normal")
    await queue.enqueue("urgent", {}, priority="urgent")
    await queue.enqueue("high", {}, priority="high")
    taken = await queue.reserve(4, worker_id="w")
    assert [j.key for j in taken.jobs] == ["urgent", "high", "normal", "low"]


async def test_earlier_arrival_wins_within_a_class(queue: Queue) -> None:
    for key in ("a", "b", "c"):
        await queue.enqueue(key, {})
    taken = await queue.reserve(3, worker_id="w")
    assert [j.key for j in taken.jobs] == ["a", "b", "c"]
    deadlines = [j.deadline_ms for j in taken.jobs]
    assert deadlines == sorted(deadlines)


async def test_reserve_stamps_hop_attempt_and_lease(queue: Queue) -> None:
    job_id = await queue.enqueue("7:418", {"text": "hi"})
    job = (await queue.reserve(1, worker_id="w", lease_ms=7000)).jobs[0]
    assert job.id == job_id
    assert job.attempt == 1
    assert job.hops["reserved"] >= job.hops["enqueued"]
    lease = await queue.redis.zscore(queue.keys.active, job_id)
    assert lease is not None and 6000 < lease - job.hops["reserved"] <= 7000.5
