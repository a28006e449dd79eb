"""`sluice worker --processes auto` with real worker processes: the count follows the
recommendation up and down, and scaling down loses no job (the stopped workers' graceful
shutdown finishes or hands back what they hold)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

from sluice import EnqueueRequest
from sluice.monitor.leader import LeaderLease
from sluice.queue.queue import Queue
from sluice.scaling.service import Scaler
from sluice.scaling.settings import load_scaling_settings
from sluice.worker import registry

from .conftest import delete_queue_keys
from .test_scaling_service import write_minutes

ROOT = Path(__file__).resolve().parents[2]
SCALING = {
    "SLUICE_SCALING_ENABLED": "true",
    "SLUICE_SCALING_MIN_WORKERS": "1",
    "SLUICE_SCALING_MAX_WORKERS": "3",
    "SLUICE_SCALING_POLL_S": "0.2",
    "SLUICE_SCALING_DRAIN_S": "0",  # the forecast alone: the waiting jobs do not hold it up
}
JOBS = 300


async def until(check: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    """Wait for a condition of the system under test (polled: it lives in other processes)."""
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_processes_follow_the_recommendation_and_no_job_is_lost(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, redis=redis_client)
    # The test is the monitoring leader: holding the lease keeps the worker processes from
    # computing recommendations of their own, so the test decides what is recommended.
    lease = LeaderLease(redis_client, queue.keys.alerts_leader, "test-leader", ttl_ms=180_000)
    assert await lease.acquire()
    scaler = Scaler(queue, load_scaling_settings(SCALING), slots_per_process=2)
    first = 29_449_440
    await write_minutes(queue, first, [3000] * 30, service_ms=1000)  # far above 3 processes
    state = await scaler.step()
    assert state is not None and state["desired_workers"] == 3
    env = {
        **os.environ,
        **SCALING,
        "REDIS_URL": redis_url,
        "SLUICE_QUEUE": queue_name,
        "WORKER_CONCURRENCY": "2",
        "SLUICE_HEARTBEAT_MS": "200",
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
    }
    handler = "tests.integration.scaling_handler:handle"
    command = [sys.executable, "-m", "sluice", "worker", "--processes", "auto:1..3"]
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once; the test awaits Redis, not it
        [*command, "--handler", handler], env=env, stderr=subprocess.DEVNULL
    )

    async def workers(count: int) -> bool:
        return len(await registry.live_workers(redis_client, queue.keys)) == count

    try:
        await until(lambda: workers(3), 60, "3 worker processes")
        await queue.enqueue_many(
            [EnqueueRequest(key=f"c{n % 50}", payload={"n": n}) for n in range(JOBS)]
        )
        # Then half an hour of quiet minutes: the recommendation falls to the minimum while
        # the three processes are busy with the jobs.
        await write_minutes(queue, first + 30, [0] * 30, service_ms=1000)
        quiet = await scaler.step()
        assert quiet is not None and quiet["desired_workers"] == 1
        await until(lambda: workers(1), 60, "scale-down to 1 worker process")

        async def all_done() -> bool:
            return (await queue.counts())["completed"] == JOBS

        await until(all_done, 60, "every job completed")
        counts = await queue.counts()
        assert counts["dead"] == 0 and counts["waiting"] == 0 and counts["active"] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        await lease.release()
        await delete_queue_keys(redis_client, queue_name)


def test_auto_needs_scaling_switched_on(redis_url: str, queue_name: str) -> None:
    env = {"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name, "SLUICE_SCALING_ENABLED": ""}
    done = subprocess.run(
        [sys.executable, "-m", "sluice", "worker", "--processes", "auto"],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "SLUICE_SCALING_ENABLED=true" in done.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "sluice", "worker", "--processes", "auto:3..1"],
        env={
            **os.environ,
            **env,
            "SLUICE_SCALING_ENABLED": "true",
            "PYTHONPATH": str(ROOT / "src"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "MIN <= MAX" in bad.stderr


def test_a_stale_or_missing_recommendation_keeps_the_current_count(
    redis_url: str, queue_name: str
) -> None:
    """The supervisor reads None (keep what runs) when no recommendation is stored and when
    the stored one is older than STALE_AFTER_S (no leader refreshes it any more), not the
    old number; a fresh one is followed."""
    import json

    import redis

    from sluice.scaling.follow import desired_reader
    from sluice.scaling.service import STALE_AFTER_S
    from sluice.settings.config import load_settings

    settings = load_settings({"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name})
    read = desired_reader(settings, redis_url)
    key = Queue(queue_name, redis=aioredis.Redis()).keys.scaling_state
    client = redis.Redis.from_url(redis_url)
    try:
        assert read() is None
        old = time.time() - STALE_AFTER_S - 60
        client.set(key, json.dumps({"computed_at": old, "desired_workers": 1}), ex=600)
        assert read() is None
        client.set(key, json.dumps({"computed_at": time.time(), "desired_workers": 3}), ex=600)
        assert read() == 3
    finally:
        client.delete(key)
        client.close()


def test_auto_range_beyond_what_the_supervisor_can_number_is_refused() -> None:
    """auto:1..20000 was accepted, and the supervisor's slot numbering (below 10 000) ran
    out with a StopIteration when the recommendation asked for more: refused up front."""
    import pytest

    from sluice.scaling.follow import AutoProcesses, parse_processes

    on = load_scaling_settings({"SLUICE_SCALING_ENABLED": "true"})
    assert parse_processes("auto:2..10000", on) == AutoProcesses(2, 10_000)
    with pytest.raises(ValueError, match="MAX <= 10000"):
        parse_processes("auto:1..20000", on)
