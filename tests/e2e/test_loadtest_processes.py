"""`sluice loadtest` as an operator runs it: every part in processes of its own (the
simulator, two customer processes, `sluice serve --workers`, `sluice worker --processes`),
reporting what customers saw, what Chatwoot delivered and the CPU of each part."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from ..integration.conftest import delete_queue_keys


async def test_loadtest_in_separate_processes_answers_every_line(
    redis_url: str, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    env = {**os.environ, "REDIS_URL": redis_url, "WORKER_CONCURRENCY": "20"}
    env.pop("SLUICE_QUEUE", None)
    command = [
        sys.executable, "-m", "sluice", "loadtest",
        "--conversations", "12", "--rate", "6", "--duration", "4", "--ramp-up", "1",
        "--broker-latency", "20", "--processes", "2", "--api-processes", "2",
        "--customer-processes", "2", "--json", str(out),
    ]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    try:
        assert report["sent"] > 0
        assert report["replied"] == report["sent"]
        assert report["missing"] == 0 and report["duplicate_replies"] == 0
        assert report["customer_errors"] == 0
        webhooks = report["chatwoot"]["webhooks"]
        assert webhooks["failed"] == 0 and webhooks["failed_by_reason"] == {}
        # The account webhook as `sluice chatwoot setup` subscribes it: no typing events.
        assert "conversation_typing_on" not in webhooks["by_event"]
        parts = report["parts"]
        assert {name: part["processes"] for name, part in parts.items()} == {
            "simulator": 1,
            "api": 2,
            "workers": 2,
            "customers": 2,
            "redis": 1,
        }
        for name in ("simulator", "api", "workers", "customers"):
            assert parts[name]["cpu_s"] > 0, name  # each part worked, in its own process
        assert "CPU workers (2 proc)" in done.stdout
    finally:
        await delete_queue_keys(redis_client, report["queue"])
