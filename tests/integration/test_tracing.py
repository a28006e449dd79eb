"""The engine's spans (sluice.tracing.messaging) on a real Redis and a real Worker: the tree
each message makes, its parentage across the queue, the conventions' attributes, and what a
failure, a retry, a dead letter, a bulk enqueue and a burst answered in one turn look like."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode

from sluice import EnqueueRequest, Job, NonRetryableError, Queue, Worker, tracing
from tests.tracing_support import (
    WatchedExporter,
    captured_spans,
    in_trace,
    is_child,
    linked_ids,
    named,
    one,
    span_id,
    trace_id,
)


@pytest.fixture
def spans() -> Iterator[WatchedExporter]:
    with captured_spans() as exporter:
        yield exporter


@contextlib.asynccontextmanager
async def working(
    queue: Queue, handler: Callable[[Job], Awaitable[None]], **kw: object
) -> AsyncIterator[Worker]:
    options: dict[str, object] = {"concurrency": 4, "handle_signals": False, "idle_poll_s": 0.2}
    options.update(kw)
    worker = Worker(queue, handler, **options)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.stop()
        await task


async def test_one_message_is_one_trace_send_wait_process(
    spans: WatchedExporter, queue: Queue, redis_client: aioredis.Redis
) -> None:
    handled = asyncio.Event()

    async def handler(job: Job) -> None:
        handled.set()

    job_id = await queue.enqueue("7:418", {"text": "hi"}, id="cw-1001")
    stored = await redis_client.hget(queue.keys.job(job_id), "tp")
    assert stored is not None and stored.startswith(b"00-")
    async with working(queue, handler):
        await asyncio.wait_for(handled.wait(), 10)
        await spans.wait_for(f"process {queue.name}", 1)

    finished = spans.get_finished_spans()
    send = one(finished, f"send {queue.name}")
    wait = one(finished, "queue wait")
    process = one(finished, f"process {queue.name}")
    # The send span is the root (nothing around the enqueue); the job carried its context.
    assert send.parent is None and send.kind is SpanKind.PRODUCER
    version, trace_hex, span_hex, flags = stored.decode().split("-")
    assert (trace_hex, span_hex) == (f"{trace_id(send):032x}", f"{span_id(send):016x}")
    assert version == "00" and int(flags, 16) & 1  # W3C traceparent, sampled
    assert is_child(wait, send) and wait.kind is SpanKind.INTERNAL
    assert is_child(process, send) and process.kind is SpanKind.CONSUMER
    assert process.parent is not None and process.parent.is_remote
    assert linked_ids(process) == [span_id(send)]
    assert {trace_id(s) for s in finished} == {trace_id(send)}

    # Attributes after the messaging conventions (and Sluice's own namespace).
    assert send.attributes is not None and process.attributes is not None
    assert dict(send.attributes) == {
        "messaging.system": "sluice",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": queue.name,
        "messaging.message.conversation_id": "7:418",
        "messaging.message.body.size": len('{"text":"hi"}'),
        "messaging.sluice.source_message_id": "cw-1001",
        "messaging.message.id": job_id,
    }
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.operation.name"] == "process"
    assert process.attributes["messaging.destination.name"] == queue.name
    assert process.attributes["messaging.message.id"] == job_id
    assert process.attributes["messaging.message.conversation_id"] == "7:418"
    assert process.attributes["messaging.sluice.attempt"] == 1
    assert process.attributes["messaging.sluice.outcome"] == "completed"
    assert str(process.attributes["messaging.client.id"])
    assert "messaging.batch.message_count" not in process.attributes
    assert process.status.status_code is StatusCode.UNSET

    # The wait runs on Redis's clock, from the enqueue to the reservation (the job's hops).
    record = await queue.get_job(job_id)
    assert record is not None and record.state == "completed"
    # Its trace context served its runs: the completed job keeps its timeline without it.
    assert await redis_client.hget(queue.keys.job(job_id), "tp") is None
    assert wait.start_time == int(record.hops["enqueued"] * 1_000_000)
    assert wait.end_time == int(record.hops["reserved"] * 1_000_000)
    assert wait.attributes is not None and wait.attributes["messaging.message.id"] == job_id
    assert process.start_time is not None and wait.end_time is not None
    assert process.start_time >= wait.end_time - 5_000_000  # two clocks on one host


async def test_a_failure_then_a_retry_stay_in_the_message_trace(
    spans: WatchedExporter, queue: Queue
) -> None:
    attempts: list[int] = []

    async def handler(job: Job) -> None:
        attempts.append(job.attempt)
        if job.attempt == 1:
            raise RuntimeError("the broker is down")

    job_id = await queue.enqueue("7:1", {})
    async with working(queue, handler, retry_base_ms=20, retry_max_ms=40):
        await spans.wait_for(f"process {queue.name}", 2)
    assert attempts == [1, 2]

    finished = spans.get_finished_spans()
    send = one(finished, f"send {queue.name}")
    first, second = sorted(
        named(finished, f"process {queue.name}"), key=lambda s: s.start_time or 0
    )
    assert all(is_child(p, send) for p in (first, second))
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes["messaging.sluice.outcome"] == "retry"
    assert first.attributes["error.type"] == "RuntimeError"
    assert [e.name for e in first.events] == ["exception"]
    assert second.attributes["messaging.sluice.attempt"] == 2
    assert second.attributes["messaging.sluice.outcome"] == "completed"
    assert second.status.status_code is StatusCode.UNSET
    # The second wait starts when the first attempt failed (the back-off is waiting too).
    waits = sorted(named(finished, "queue wait"), key=lambda s: s.start_time or 0)
    assert len(waits) == 2 and all(is_child(w, send) for w in waits)
    record = await queue.get_job(job_id)
    assert record is not None
    assert waits[1].start_time == int(record.hops["failed"] * 1_000_000)
    assert len({trace_id(s) for s in finished}) == 1


async def test_a_dead_letter_says_so(spans: WatchedExporter, queue: Queue) -> None:
    async def handler(job: Job) -> None:
        raise NonRetryableError("bad input")

    await queue.enqueue("7:2", {})
    async with working(queue, handler):
        await spans.wait_for(f"process {queue.name}", 1)
    process = one(spans.get_finished_spans(), f"process {queue.name}")
    assert process.attributes is not None
    assert process.attributes["messaging.sluice.outcome"] == "dead"
    assert process.attributes["error.type"] == "sluice.errors.NonRetryableError"
    assert process.status.status_code is StatusCode.ERROR


async def test_bulk_enqueue_gives_each_message_its_own_trace(
    spans: WatchedExporter, queue: Queue
) -> None:
    done = asyncio.Event()
    seen: list[str] = []

    async def handler(job: Job) -> None:
        seen.append(job.id)
        if len(seen) == 3:
            done.set()

    ids = await queue.enqueue_many([EnqueueRequest(key=f"c{n}", payload={}) for n in range(3)])
    async with working(queue, handler):
        await asyncio.wait_for(done.wait(), 10)
        await spans.wait_for(f"process {queue.name}", 3)

    finished = spans.get_finished_spans()
    send = one(finished, f"send {queue.name}")
    creates = named(finished, f"create {queue.name}")
    assert send.kind is SpanKind.CLIENT and len(creates) == 3
    assert send.attributes is not None
    assert send.attributes["messaging.batch.message_count"] == 3
    assert sorted(linked_ids(send)) == sorted(span_id(c) for c in creates)
    assert all(c.kind is SpanKind.PRODUCER and c.parent is None for c in creates)
    assert len({trace_id(c) for c in creates}) == 3
    for create in creates:
        trace = in_trace(finished, trace_id(create))
        process = one(trace, f"process {queue.name}")
        assert is_child(process, create) and is_child(one(trace, "queue wait"), create)
        assert process.attributes is not None
        assert process.attributes["messaging.message.id"] in ids


async def test_a_burst_answered_in_one_turn_lives_in_its_first_message_trace(
    spans: WatchedExporter, queue: Queue
) -> None:
    turns: list[list[str]] = []
    done = asyncio.Event()

    async def handler(job: Job) -> None:
        turns.append([m.id for m in job.members])
        done.set()

    ids = [await queue.enqueue("7:9", {"n": n}) for n in range(3)]
    async with working(queue, handler, batch_size=5):
        await asyncio.wait_for(done.wait(), 10)
        await spans.wait_for(f"process {queue.name}", 1)
    assert turns == [ids]

    finished = spans.get_finished_spans()
    sends = sorted(named(finished, f"send {queue.name}"), key=lambda s: s.start_time or 0)
    process = one(finished, f"process {queue.name}")
    assert len({trace_id(s) for s in sends}) == 3  # one trace per message
    assert is_child(process, sends[0])
    assert linked_ids(process) == [span_id(s) for s in sends]
    assert [link.attributes["messaging.message.id"] for link in process.links] == ids  # type: ignore[index]
    assert process.attributes is not None
    assert process.attributes["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in process.attributes
    # Each message's own trace shows how long it waited.
    for send in sends:
        assert is_child(one(in_trace(finished, trace_id(send)), "queue wait"), send)


async def test_a_job_enqueued_without_tracing_gets_a_trace_of_its_own(
    queue: Queue, redis_client: aioredis.Redis
) -> None:
    job_id = await queue.enqueue("7:3", {})  # tracing off: nothing carried
    assert await redis_client.hget(queue.keys.job(job_id), "tp") is None
    handled = asyncio.Event()

    async def handler(job: Job) -> None:
        handled.set()

    with captured_spans() as exporter:
        async with working(queue, handler):
            await asyncio.wait_for(handled.wait(), 10)
            await exporter.wait_for(f"process {queue.name}", 1)
        finished = exporter.get_finished_spans()
    process = one(finished, f"process {queue.name}")
    assert process.parent is None and process.links == ()
    assert is_child(one(finished, "queue wait"), process)


async def test_tracing_off_adds_nothing_to_a_job(
    queue: Queue, redis_client: aioredis.Redis
) -> None:
    assert not tracing.enabled
    one_id = await queue.enqueue("7:4", {"a": 1}, hops={"received": 1.0})
    bulk = await queue.enqueue_many([EnqueueRequest(key="7:5", payload={})])
    for job_id in (one_id, *bulk):
        fields = await redis_client.hgetall(queue.keys.job(job_id))
        assert b"tp" not in fields
        assert fields[b"state"] == b"waiting"


class RootsWhenAsked(Sampler):
    """Samples a trace's root span only while ``sample_roots`` is set; a child follows its
    parent (wrapped in ParentBased below), as the SDK's default sampler does."""

    def __init__(self) -> None:
        self.sample_roots = False

    def should_sample(self, *args: object, **kwargs: object) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.sample_roots else Decision.DROP)

    def get_description(self) -> str:
        return "RootsWhenAsked"


async def test_a_sampled_out_message_makes_no_span_and_no_orphan_trace(queue: Queue) -> None:
    """A message created unsampled is worked without span work (the process span is
    skipped), and the handler's spans still inherit that decision: they must not start
    traces of their own, which a root sampler would then keep."""
    roots = RootsWhenAsked()
    handled: dict[str, bool] = {}
    done = asyncio.Event()

    async def handler(job: Job) -> None:
        with tracing.spans.TRACER.start_as_current_span("turn") as span:
            handled[job.payload["n"]] = span.is_recording()
        if len(handled) == 2:
            done.set()

    with captured_spans(ParentBased(roots)) as exporter:
        await queue.enqueue("a", {"n": "unsampled"})
        roots.sample_roots = True
        await queue.enqueue("b", {"n": "sampled"})
        async with working(queue, handler):
            await asyncio.wait_for(done.wait(), 10)
            await exporter.wait_for(f"process {queue.name}", 1)
        finished = exporter.get_finished_spans()

    assert handled == {"unsampled": False, "sampled": True}
    sampled = one(finished, f"send {queue.name}")
    # Everything exported belongs to the sampled message's trace: no orphan "turn" root.
    assert {trace_id(s) for s in finished} == {trace_id(sampled)}
    assert len(named(finished, "turn")) == 1 and len(named(finished, "queue wait")) == 1
