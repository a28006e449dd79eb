"""Every transition lands in the capped event stream (a job's hot-path ones while the queue
logs them: Queue.set_events); counters are kept per second."""

from __future__ import annotations

import time

from sluice import Completion, Queue


async def test_transitions_are_streamed_in_order(queue: Queue) -> None:
    await queue.set_events(True)
    job_id = await queue.enqueue("7:418", {})
    await queue.pause()
    await queue.resume()
    job = (await queue.reserve(1, worker_id="w1")).jobs[0]
    await queue.complete([Completion(job.id, job.token, {})], worker_id="w1")
    entries = await queue.redis.xrange(queue.keys.events)
    kinds = [(e[b"type"].decode(), e[b"job"].decode()) for _, e in entries]
    assert kinds == [
        ("enqueued", job_id),
        ("paused", ""),
        ("resumed", ""),
        ("reserved", job_id),
        ("completed", job_id),
    ]


async def test_event_stream_is_capped(queue: Queue) -> None:
    from sluice import EnqueueRequest

    for start in range(0, 12_000, 2_000):
        await queue.enqueue_many(
            [EnqueueRequest(key=f"c{n}", payload=None) for n in range(start, start + 2_000)]
        )
    assert await queue.redis.xlen(queue.keys.events) < 11_000


async def test_per_second_counters(queue: Queue) -> None:
    for n in range(3):
        await queue.enqueue(f"c{n}", {})
    jobs = (await queue.reserve(3, worker_id="w")).jobs
    await queue.complete([Completion(j.id, j.token, {}) for j in jobs], worker_id="w")
    now = int(time.time())
    totals: dict[str, int] = {}
    for second in range(now - 5, now + 2):
        for field, value in (await queue.redis.hgetall(queue.keys.stats(second))).items():
            totals[field.decode()] = totals.get(field.decode(), 0) + int(value)
    assert totals == {"reserved": 3, "completed": 3}  # enqueues: mon `enq` (one write less)
    ttl = await queue.redis.ttl(queue.keys.stats(now))
    assert ttl == -2 or 0 < ttl <= 7200


async def test_hot_path_transitions_are_off_by_default(queue: Queue) -> None:
    job_id = await queue.enqueue("7:418", {})
    job = (await queue.reserve(1, worker_id="w1")).jobs[0]
    await queue.complete([Completion(job.id, job.token, {})], worker_id="w1")
    assert await queue.redis.xlen(queue.keys.events) == 0
    await queue.set_events(True)
    await queue.enqueue("7:419", {})
    await queue.set_events(False)
    await queue.enqueue("7:420", {})
    entries = await queue.redis.xrange(queue.keys.events)
    assert [e[b"type"] for _, e in entries] == [b"enqueued"]
    assert job_id
