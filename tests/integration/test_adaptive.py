"""Adaptive concurrency on a real Redis: workers split the controller's target, an
operator's override wins, static mode ignores the target, and broker calls are counted
for the controller (429s apart). The law itself is tested in tests/unit/test_adaptive_law.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from sluice import EnqueueRequest, Job, Queue, Worker
from sluice.broker.base import HandlerError
from sluice.broker.meter import read_totals
from sluice.control.controller import ConcurrencyController, read_status, target_history
from sluice.control.law import LawConfig


@contextlib.asynccontextmanager
async def running(*workers: Worker) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield
    finally:
        for w in workers:
            w.request_stop()
        await asyncio.gather(*tasks)


def worker(queue: Queue, name: str, *, adaptive: bool = True, handler: object = None) -> Worker:
    async def idle(job: Job) -> None:
        return None

    chosen: Callable[[Job], Awaitable[None]] = handler or idle  # type: ignore[assignment]
    return Worker(
        queue,
        chosen,
        concurrency=4,
        heartbeat_ms=100,
        handle_signals=False,
        idle_poll_s=0.2,
        adaptive=adaptive,
        worker_id=f"{queue.name}-{name}",
        retry_base_ms=10,
    )


async def beats_until(workers: list[Worker], done: Callable[[], bool], beats: int = 30) -> None:
    """Heartbeats (each one re-reads the share) until ``done()``; fails after ``beats``."""
    for _ in range(beats):
        if done():
            return
        await asyncio.gather(*(w.wait_heartbeat() for w in workers))
    assert done(), [w.concurrency for w in workers]


async def registered(*workers: Worker) -> None:
    """One heartbeat of each: every worker is in the registry."""
    await asyncio.gather(*(w.wait_heartbeat() for w in workers))


async def set_target(queue: Queue, target: int) -> None:
    """What the controller writes on a change (the share is re-read on the publish)."""
    await queue.redis.hset(queue.keys.adaptive, "target", target)
    await queue.redis.publish(queue.keys.control, "concurrency")


async def test_two_workers_split_the_target(queue: Queue) -> None:
    a, b = worker(queue, "a"), worker(queue, "b")
    async with running(a, b):
        await registered(a, b)
        await set_target(queue, 7)
        # The remainder goes to the first id in order: a gets 4, b gets 3.
        await beats_until([a, b], lambda: (a.concurrency, b.concurrency) == (4, 3))
        await set_target(queue, 1)
        # Never below one slot each, whatever the target.
        await beats_until([a, b], lambda: (a.concurrency, b.concurrency) == (1, 1))


async def test_controller_decides_once_and_the_override_wins(queue: Queue) -> None:
    a, b = worker(queue, "a"), worker(queue, "b")
    controller = ConcurrencyController(
        queue, LawConfig(min_per_worker=1, max_per_worker=3), configured=4
    )
    async with running(a, b):
        await registered(a, b)
        assert await controller.step() is None  # the rates need two readings
        decision = await controller.step()
        assert decision is not None
        # 8 configured slots above the bounds (3 per worker × 2): down to the ceiling.
        assert decision.target == 6 and "ceiling (max 3/worker × 2)" in decision.reason
        status = await read_status(queue)
        assert status.target == 6 and status.decisions == {"up": 0, "down": 1}
        history = await target_history(queue, 0)
        assert [h["target"] for h in history] == [6]
        await beats_until([a, b], lambda: (a.concurrency, b.concurrency) == (3, 3))
        # A second controller (another process) does not lead while the first does.
        other = ConcurrencyController(queue, LawConfig(), configured=4)
        assert await other.step() is None
        # The operator's live override wins over the share, and the controller holds.
        await queue.set_concurrency(2)
        await beats_until([a, b], lambda: (a.concurrency, b.concurrency) == (2, 2))
        assert await controller.step() is None
        assert "operator override" in ((await read_status(queue)).status or "")
        await queue.set_concurrency(None)
        await beats_until([a, b], lambda: (a.concurrency, b.concurrency) == (3, 3))
    await controller.stop()


async def test_static_mode_ignores_the_target(queue: Queue) -> None:
    a = worker(queue, "a", adaptive=False)
    async with running(a):
        await set_target(queue, 1)
        for _ in range(3):
            await a.wait_heartbeat()
        assert a.concurrency == 4


async def test_broker_calls_are_counted_with_their_429s(queue: Queue) -> None:
    """A handler's runs are its broker calls: answered, failed, throttled (429); the
    heartbeat adds them to the queue's counters."""

    async def handler(job: Job) -> None:
        kind = job.payload["kind"]
        if kind == "429":
            raise HandlerError("HTTP 429", retryable=False, throttled=True)
        if kind == "500":
            raise HandlerError("HTTP 500", retryable=False)

    kinds = ["ok", "ok", "429", "500"]
    await queue.enqueue_many(
        [EnqueueRequest(key=f"c{n}", payload={"kind": k}) for n, k in enumerate(kinds)]
    )
    a = worker(queue, "a", adaptive=False, handler=handler)
    async with running(a):
        # The queue retries both failures (3 attempts) and buries them; every attempt is a
        # call: 2 answered + 3 throttled + 3 failed.
        for _ in range(100):
            if (await read_totals(queue.redis, queue.keys)).calls >= 8:
                break
            await a.wait_heartbeat()
    totals = await read_totals(queue.redis, queue.keys)
    assert (totals.calls, totals.errors, totals.throttled) == (8, 6, 3)
    assert totals.latency_ms >= 0
