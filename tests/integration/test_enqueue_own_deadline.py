"""Queue.add's ``target`` and ``due_in_ms`` (enqueue's "target/own", docs/priorities.md) on
the real Redis: a value the Lua cannot read is refused in Python, before anything is
written. Lua parses "target/own" after the message id's dedupe record, the job id and the
lane's RPUSH are written, so a value it failed to parse left the lane naming a job without
a record and the message id marked as seen (a retry of the webhook deduplicated away)."""

from __future__ import annotations

import pytest

from sluice import Queue


@pytest.mark.parametrize(
    ("target", "due_in_ms"),
    [
        (1e16, None),  # str() writes 1e+16
        (float("nan"), None),
        (True, None),
        ("100", None),
        (1000, float("inf")),
        (1000, float("nan")),
        (1000, "5"),
    ],
)
async def test_an_unreadable_target_or_own_deadline_is_refused_and_writes_nothing(
    queue: Queue, target: object, due_in_ms: object
) -> None:
    with pytest.raises(ValueError):
        await queue.add("1:a", {}, id="m1", target=target, due_in_ms=due_in_ms)  # type: ignore[arg-type]
    assert await queue.redis.llen(queue.keys.lane("1:a")) == 0
    assert await queue.redis.exists(queue.keys.dedupe("m1")) == 0
    # The same message, well formed, is enqueued (not taken for a duplicate) and runs.
    added = await queue.add("1:a", {}, id="m1", target=1000, due_in_ms=-5.6)
    assert not added.duplicate
    job = (await queue.reserve(1, worker_id="w")).jobs[0]
    assert job.key == "1:a"
    record = await queue.get_job(added.job_id)
    assert record is not None and record.target_ms == 1000
