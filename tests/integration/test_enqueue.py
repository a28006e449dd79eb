"""Enqueue: ids, idempotency on message ids, hop stamps, and bad input changing nothing."""

from __future__ import annotations

import pytest

from sluice import Queue


async def test_enqueue_returns_distinct_ids_and_counts_waiting(queue: Queue) -> None:
    a = await queue.enqueue("7:418", {"text": "hi"})
    b = await queue.enqueue("7:419", {"text": "hello"})
    assert a != b
    counts = await queue.counts()
    assert counts["waiting"] == 2
    assert counts["ready_lanes"] == 2


async def test_duplicate_message_id_returns_first_job_and_adds_nothing(queue: Queue) -> None:
    first = await queue.add("7:418", {"text": "hi"}, id="cw-1001")
    again = await queue.add("7:418", {"text": "hi, resent"}, id="cw-1001")
    assert not first.duplicate
    assert again.duplicate
    assert again.job_id == first.job_id
    assert (await queue.counts())["waiting"] == 1
    stored = await queue.get_job(first.job_id)
    assert stored is not None and stored.payload == {"text": "hi"}


async def test_dedupe_record_is_kept_for_a_day(queue: Queue) -> None:
    await queue.enqueue("7:418", {}, id="cw-ttl")
    ttl_ms = await queue.redis.pttl(queue.keys.dedupe("cw-ttl"))
    assert 86_000_000 < ttl_ms <= 86_400_000
    assert await queue.find_by_message_id("cw-ttl") is not None


async def test_hops_are_stamped(queue: Queue) -> None:
    job_id = await queue.enqueue(
        "7:418", {}, hops={"source_created": 1_700_000_000_000.5, "received": 1_700_000_000_100.0}
    )
    stored = await queue.get_job(job_id)
    assert stored is not None
    assert stored.hops["source_created"] == pytest.approx(1_700_000_000_000.5)
    assert stored.hops["received"] == pytest.approx(1_700_000_000_100.0)
    assert stored.hops["enqueued"] > 1_700_000_000_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": "", "payload": {}}, "conversation key"),
        ({"key": "7:1", "payload": {}, "priority": "asap"}, "unknown priority"),
        ({"key": "7:1", "payload": {}, "hops": {"a:b": 1.0}}, "hop name"),
        ({"key": "7:1", "payload": {}, "hops": {"a=b;c": 1.0}}, "hop name"),
        ({"key": "7:1", "payload": {}, "hops": {"": 1.0}}, "hop name"),
        ({"key": "7:1", "payload": {1, 2}}, "not JSON serializable"),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    queue: Queue, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        await queue.enqueue(**kwargs)  # type: ignore[arg-type]
    assert (await queue.counts())["waiting"] == 0


async def test_enqueue_many_keeps_lane_order(queue: Queue) -> None:
    from sluice import EnqueueRequest

    ids = await queue.enqueue_many(
        [EnqueueRequest(key="7:418", payload={"n": n}) for n in range(5)]
    )
    assert len(set(ids)) == 5
    lane = await queue.redis.lrange(queue.keys.lane("7:418"), 0, -1)
    assert [x.decode() for x in lane] == ids
