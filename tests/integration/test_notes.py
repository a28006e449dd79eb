"""Notes (Job.note): facts about a run, such as the broker that answered, are stored with
the job when it completes or fails, beside its hops and without disturbing them."""

from __future__ import annotations

import asyncio

import pytest

from sluice import Completion, Job, Queue, Worker
from sluice.queue.job import check_note


async def test_a_completion_stores_its_notes_beside_the_hops(queue: Queue) -> None:
    job_id = await queue.enqueue("7:1", {})
    job = (await queue.reserve(1, worker_id="w")).jobs[0]
    job.note("broker", "support-bot@eu:2")
    job.mark("broker_assigned")
    done = Completion(job.id, job.token, job.marks, job.notes)
    assert (await queue.complete([done], worker_id="w"))[0] == []
    record = await queue.get_job(job_id)
    assert record is not None and record.state == "completed"
    assert record.notes == {"broker": "support-bot@eu:2"}
    assert set(record.hops) >= {"enqueued", "reserved", "broker_assigned", "completed"}
    assert record.as_dict()["notes"] == {"broker": "support-bot@eu:2"}


async def test_notes_alone_and_a_failure_keep_them(queue: Queue) -> None:
    first = await queue.enqueue("7:2", {})
    job = (await queue.reserve(1, worker_id="w")).jobs[0]
    job.note("broker", "llm-fast")
    assert await queue.fail(job, "model down", backoff_ms=0, retryable=False) == "dead"
    dead = await queue.dead_letters()
    assert [(d.id, d.notes) for d in dead] == [(first, {"broker": "llm-fast"})]
    second = await queue.enqueue("7:3", {})
    job = (await queue.reserve(1, worker_id="w")).jobs[0]
    job.note("broker", "template-bot")  # notes without any mark travel alone
    await queue.complete([Completion(job.id, job.token, {}, job.notes)], worker_id="w")
    record = await queue.get_job(second)
    assert record is not None and record.notes == {"broker": "template-bot"}


async def test_a_worker_stores_what_the_handler_noted(queue: Queue) -> None:
    seen = asyncio.Event()

    async def handler(job: Job) -> None:
        job.note("broker", "template-bot")
        seen.set()

    job_id = await queue.enqueue("7:4", {})
    worker = Worker(queue, handler, concurrency=1, handle_signals=False)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(seen.wait(), 10)
    await worker.stop()  # a graceful stop acknowledges the finished job
    await task
    record = await queue.get_job(job_id)
    assert record is not None and record.state == "completed"
    assert record.notes == {"broker": "template-bot"}


@pytest.mark.parametrize(
    ("name", "value"), [("broker", "a,b"), ("broker", "a;b"), ("broker", ""), ("a b", "x")]
)
def test_a_note_that_could_not_travel_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        check_note(name, value)
