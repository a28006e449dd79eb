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


async def test_concurrent_adds_share_calls_and_each_gets_its_own_answer(queue: Queue) -> None:
    """Adds made while earlier ones are on the wire go together in one enqueue_batch call
    (queue/coalesce.py); each keeps its own answer, dedupe, hops and place in its lane.
    (Concurrent adds have no order among themselves, as before: two calls on two
    connections run in either order; a producer's awaited adds keep theirs.)"""
    import asyncio

    from sluice.queue import coalesce

    before = (await queue.redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
    await queue.add("7:1", {"n": -1}, id="cw-first")
    adds = [
        queue.add(
            f"7:{n % 3}",
            {"n": n},
            id=f"cw-{n}" if n % 2 else ("cw-first" if n == 10 else None),
            hops={"received": 1_700_000_000_000.0 + n},
        )
        for n in range(150)
    ]
    results = await asyncio.gather(*adds)
    calls = (await queue.redis.info("commandstats"))["cmdstat_evalsha"]["calls"] - before
    assert calls < 1 + 150 // 2  # grouped: far fewer calls than adds
    assert calls >= 1 + 150 // coalesce.BATCH_MAX
    duplicate = results[10]
    assert duplicate.duplicate and duplicate.job_id == (await queue.find_by_message_id("cw-first"))
    new = [r.job_id for n, r in enumerate(results) if n != 10]
    assert len(set(new)) == 149 and not any(r.duplicate for n, r in enumerate(results) if n != 10)
    again = await asyncio.gather(*(queue.add("7:9", {}, id=f"cw-{n}") for n in range(1, 150, 2)))
    assert [r.job_id for r in again] == [results[n].job_id for n in range(1, 150, 2)]
    assert all(r.duplicate for r in again)
    for lane in range(3):
        stored = await queue.redis.lrange(queue.keys.lane(f"7:{lane}"), 0, -1)
        expected = [r.job_id for n, r in enumerate(results) if n % 3 == lane and n != 10]
        if lane == 1:
            expected.insert(0, duplicate.job_id)
        assert sorted(x.decode() for x in stored) == sorted(expected)
    job = await queue.get_job(results[149].job_id)
    assert job is not None and job.payload == {"n": 149}
    assert job.hops["received"] == 1_700_000_000_149.0
    counts = await queue.counts()
    assert counts["waiting"] == 150 and counts["ready_lanes"] == 3
    enq = await queue.redis.hget(f"{queue.keys.prefix}mon:total", "enq")
    assert int(enq) == 150


async def test_an_add_cancelled_while_it_waits_is_never_sent(queue: Queue) -> None:
    """A producer that gives up (the intake's store deadline) before its message left is
    left out of the next grouped call; the others are answered."""
    import asyncio

    from sluice.queue import coalesce

    on_wire = [
        asyncio.ensure_future(queue.add("7:1", {"n": n}, id=f"cw-w{n}"))
        for n in range(coalesce.IN_FLIGHT)
    ]
    await asyncio.sleep(0)  # both calls are on the wire: the next add waits
    late = asyncio.ensure_future(queue.add("7:2", {"late": True}, id="cw-late"))
    kept = asyncio.ensure_future(queue.add("7:3", {"kept": True}, id="cw-kept"))
    await asyncio.sleep(0)
    late.cancel()
    await asyncio.gather(*on_wire)
    assert not (await kept).duplicate
    assert late.cancelled()
    assert await queue.find_by_message_id("cw-late") is None
    assert (await queue.counts())["waiting"] == coalesce.IN_FLIGHT + 1
