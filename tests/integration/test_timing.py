"""Durations: the Python formulas agree with what the completing script measured, and a
structured line is logged per finished job."""

from __future__ import annotations

import json
import logging
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice import Completion, Queue
from sluice.logs import JsonFormatter
from sluice.queue.hops import durations


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    source_offset=st.floats(-20_000, 60_000),
    reply_after=st.one_of(st.none(), st.floats(0, 90_000)),
)
async def test_python_durations_match_the_script(
    queue: Queue, source_offset: float, reply_after: float | None
) -> None:
    now = time.time() * 1000
    hops = {"source_created": now - source_offset, "received": now}
    job_id = await queue.enqueue(f"c{source_offset}", {}, hops=hops)
    job = (await queue.reserve(1, worker_id="w")).jobs[0]
    assert job.id == job_id
    marks = {} if reply_after is None else {"reply_sent": now + reply_after}
    _, _, finished = await queue.complete([Completion(job.id, job.token, marks)], worker_id="w")
    record = await queue.get_job(job_id)
    assert record is not None
    derived = durations(record.hops)
    assert derived.sla_ms == pytest.approx(finished[0].sla_ms, abs=1.0)
    assert derived.queue_wait_ms == pytest.approx(finished[0].queue_wait_ms, abs=1.0)
    assert derived.processing_ms == pytest.approx(finished[0].processing_ms, abs=1.0)
    assert derived.verdict == finished[0].verdict or abs(derived.sla_ms - 10_000) < 2  # type: ignore[operator]
    assert derived.sla_ms is not None and derived.sla_ms >= 0
    if source_offset < 0:
        assert derived.clock_skew_ms == pytest.approx(-source_offset, abs=0.01)
        assert derived.intake_lag_ms == 0


async def test_one_structured_line_per_finished_job(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from sluice import Job, Worker

    done = asyncio.Event()

    async def handler(job: Job) -> None:
        job.mark("reply_sent")
        done.set()

    now = time.time() * 1000
    await queue.enqueue("7:418", {}, hops={"source_created": now - 12_000, "received": now})
    caplog.set_level(logging.INFO, logger="sluice.jobs")
    worker = Worker(queue, handler, handle_signals=False, idle_poll_s=0.1)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(done.wait(), 10)
    await worker.stop()
    await task
    lines = [r for r in caplog.records if r.name == "sluice.jobs"]
    assert len(lines) == 1
    entry = json.loads(JsonFormatter().format(lines[0]))
    assert entry["event"] == "job_completed" and entry["conversation"] == "7:418"
    assert entry["sla_verdict"] == "warn" and 11_500 < entry["sla_ms"] < 13_000
