"""The command line against a real Redis: operating commands and the process supervisor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from sluice.cli import app

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def env(redis_url: str, queue_name: str) -> Iterator[dict[str, str]]:
    values = {"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name}
    yield values
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"sluice:{{{queue_name}}}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def invoke(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout


def seed(url: str, queue: str, n: int) -> None:
    """Enqueue through the public API in a subprocess-free way (sync wrapper)."""
    import asyncio

    from sluice import EnqueueRequest, Queue

    async def go() -> None:
        async with Queue(queue, url=url) as q:
            await q.enqueue_many([EnqueueRequest(key=f"c{i}", payload={}) for i in range(n)])

    asyncio.run(go())


def test_status_json_reports_counts(env: dict[str, str]) -> None:
    seed(env["REDIS_URL"], env["SLUICE_QUEUE"], 3)
    code, out = invoke(env, "status", "--json")
    assert code == 0, out
    assert json.loads(out)["counts"]["waiting"] == 3


def test_pause_resume_and_drain(env: dict[str, str]) -> None:
    seed(env["REDIS_URL"], env["SLUICE_QUEUE"], 4)
    assert invoke(env, "pause") == (0, "paused\n")
    assert invoke(env, "pause") == (0, "already paused\n")
    assert json.loads(invoke(env, "status", "--json")[1])["counts"]["paused"] is True
    assert invoke(env, "resume") == (0, "resumed\n")
    code, out = invoke(env, "drain", "--yes")
    assert (code, out) == (0, "removed 4 jobs\n")


def test_drain_asks_before_removing(env: dict[str, str]) -> None:
    seed(env["REDIS_URL"], env["SLUICE_QUEUE"], 2)
    result = CliRunner().invoke(app, ["drain"], env=env, input="n\n")
    assert result.exit_code != 0
    assert "Remove 2 waiting jobs" in result.output
    assert json.loads(invoke(env, "status", "--json")[1])["counts"]["waiting"] == 2


def test_operating_commands_need_redis_url(queue_name: str) -> None:
    result = CliRunner().invoke(app, ["pause"], env={"REDIS_URL": "", "SLUICE_QUEUE": queue_name})
    assert result.exit_code == 2
    assert "REDIS_URL is not set" in result.output


def test_bad_configuration_names_the_variable(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["status"], env={**env, "WORKER_CONCURRENCY": "-3"})
    assert result.exit_code == 2
    assert "WORKER_CONCURRENCY" in result.output


def test_an_empty_dlq_says_so_instead_of_an_empty_table(env: dict[str, str]) -> None:
    code, out = invoke(env, "dlq", "list")
    assert code == 0 and "no dead letters" in out and "┃" not in out


def test_dlq_retry_unknown_job_fails(env: dict[str, str]) -> None:
    code, out = invoke(env, "dlq", "retry", "999999")
    assert code == 1 and "not a dead letter" in out


def test_worker_processes_register_and_stop_on_sigterm(env: dict[str, str]) -> None:
    child_env = {
        **os.environ,
        **env,
        "PYTHONPATH": str(SRC),
        "SLUICE_HEARTBEAT_MS": "200",
        # The default handler is the Chatwoot pipeline; no message arrives in this test.
        "CHATWOOT_URL": "http://127.0.0.1:9",
        "CHATWOOT_API_TOKEN": "unused",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice", "worker", "--processes", "2"],
        env=child_env,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        assert proc.stderr is not None
        started = 0
        for line in proc.stderr:  # the workers' own log lines are the events we wait for
            if "started: 10 slots" in line:
                started += 1
                if started == 2:
                    break
        assert started == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        workers_key = f"sluice:{{{env['SLUICE_QUEUE']}}}:workers"
        assert client.zcard(workers_key) == 0  # both withdrew on the way out
    finally:
        if proc.poll() is None:
            proc.kill()
        client.close()


@pytest.mark.parametrize(
    "command",
    [["status"], ["pause"], ["resume"], ["drain", "--yes"], ["dlq", "list"], ["dlq", "retry", "1"]],
)
def test_an_unreachable_redis_is_one_line_not_a_traceback(command: list[str]) -> None:
    # Nothing listens on port 1; the password must not be printed.
    env = {**os.environ, "REDIS_URL": "redis://ops:hunter2@127.0.0.1:1/0"}
    env.pop("SLUICE_DATA_DIR", None)
    done = subprocess.run(
        [sys.executable, "-m", "sluice", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output and "╭" not in output
    assert "Redis unavailable" in output and "127.0.0.1:1" in output
    assert "hunter2" not in output
    assert len(output.strip().splitlines()) == 1, output


def test_partitions_shows_and_resizes_the_layout(env: dict[str, str]) -> None:
    seed(env["REDIS_URL"], env["SLUICE_QUEUE"], 2)  # unpartitioned: all on partition 0
    assert invoke(env, "partitions") == (0, "1 partition (no layout recorded)\n")
    code, out = invoke(env, "partitions", "3")
    name = env["SLUICE_QUEUE"]
    assert (code, out) == (
        0,
        "3 partitions (epoch 1); resize from 1 in progress\n"
        f"hash tags: 0 {{{name}}}, 1 {{{name}#1}}, 2 {{{name}#2}}\n",
    )
    parted = {**env, "SLUICE_PARTITIONS": "3"}
    assert invoke(parted, "partitions", "4")[0] == 1  # one resize at a time
    assert json.loads(invoke(parted, "status", "--json")[1])["counts"]["waiting"] == 2
    client = redis.Redis.from_url(env["REDIS_URL"])
    keys = list(client.scan_iter(match=f"sluice:{{{env['SLUICE_QUEUE']}*"))
    if keys:
        client.delete(*keys)
    client.close()
