"""`sluice validate` against the real Redis: passes, and fails loudly when it should."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from typer.testing import CliRunner

from sluice import EnqueueRequest, Job, Queue, Worker
from sluice.cli import app
from sluice.redis.embedded import EmbeddedRedis

from ..servers import RedisServer


def validate(env: Mapping[str, str | None]) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(app, ["validate", "--json"], env=env)
    return result.exit_code, json.loads(result.stdout)


def outcomes(report: dict[str, object]) -> dict[str, str]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return {c["name"]: c["outcome"] for c in checks}


def test_all_checks_pass_on_a_healthy_redis(redis_url: str) -> None:
    code, report = validate({"REDIS_URL": redis_url})
    assert code == 0, report
    names = outcomes(report)
    for name in (
        "redis reachable",
        "redis version",
        "eviction policy",
        "pool minimum",
        "scripts",
        "canary",
        "rate limit",
        "pause/resume",
        "thresholds",
    ):
        assert names[name] == "pass", (name, report)
    client = redis.Redis.from_url(redis_url)
    try:
        assert not list(client.scan_iter(match="sluice:{validate-*"))  # cleaned up
    finally:
        client.close()


def test_eviction_policy_fails_validation(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    before = client.config_get("maxmemory-policy")["maxmemory-policy"]
    client.config_set("maxmemory-policy", "volatile-lru")
    try:
        code, report = validate({"REDIS_URL": redis_url})
    finally:
        client.config_set("maxmemory-policy", before)
        client.close()
    assert code == 1
    assert outcomes(report)["eviction policy"] == "fail"


def test_unreachable_redis_fails(queue_name: str) -> None:
    code, report = validate({"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert code == 1
    assert outcomes(report)["redis reachable"] == "fail"


def test_persistence_is_reported(redis_url: str) -> None:
    """A Redis without an append-only file warns (a restart loses queued messages) but does
    not fail validation: a scratch queue may run that way on purpose."""
    client = redis.Redis.from_url(redis_url)
    try:
        aof = client.config_get("appendonly")["appendonly"]
    finally:
        client.close()
    code, report = validate({"REDIS_URL": redis_url})
    checks = {c["name"]: c for c in report["checks"]}  # type: ignore[union-attr]
    persistence = checks["persistence"]
    if aof == "no":
        assert persistence["outcome"] == "warn"
        assert "appendonly yes" in persistence["detail"]
        assert code == 0  # a warning is not a failure
    else:
        assert persistence["outcome"] in ("pass", "warn")


def persistence_check(env: Mapping[str, str | None]) -> dict[str, str]:
    _, report = validate(env)
    checks = {c["name"]: c for c in report["checks"]}  # type: ignore[union-attr]
    return checks["persistence"]  # type: ignore[no-any-return]


def test_a_redis_of_ones_own_without_persistence_is_told_appendonly_yes() -> None:
    server = RedisServer()  # appendonly no
    server.start()
    try:
        server.wait_ready()
        check = persistence_check({"REDIS_URL": server.url})
    finally:
        server.stop()
    assert check["outcome"] == "warn", check
    assert "appendonly yes" in check["detail"]
    assert "SLUICE_DATA_DIR" not in check["detail"]


def test_the_embedded_server_without_a_data_dir_is_told_sluice_data_dir() -> None:
    """Without REDIS_URL validate runs on an embedded server, whose configuration Sluice
    writes: `appendonly yes` is no switch an operator has there, SLUICE_DATA_DIR is."""
    check = persistence_check({"REDIS_URL": None, "SLUICE_DATA_DIR": None})  # unset
    assert check["outcome"] == "warn", check
    assert "embedded Redis without SLUICE_DATA_DIR" in check["detail"]
    assert "set SLUICE_DATA_DIR to a directory" in check["detail"]
    assert "appendonly" not in check["detail"]


def test_the_embedded_server_with_a_data_dir_has_an_append_only_file(tmp_path: Path) -> None:
    check = persistence_check({"REDIS_URL": None, "SLUICE_DATA_DIR": str(tmp_path / "data")})
    assert check["outcome"] == "warn", check  # everysec: a host crash can lose a second
    assert check["detail"].startswith(
        "embedded Redis with SLUICE_DATA_DIR, append-only file, appendfsync everysec"
    )
    assert "set REDIS_URL to a Redis of your own" in check["detail"]
    assert "appendonly yes" not in check["detail"]
    assert (tmp_path / "data" / "sluice.lock").exists()


def test_a_redis_url_naming_an_embedded_server_is_recognised() -> None:
    """`sluice up` prints its embedded server's address for other shells; validate run
    there with REDIS_URL set to it still gives the embedded server's advice."""
    with EmbeddedRedis() as server:
        check = persistence_check({"REDIS_URL": server.url})
    assert "embedded Redis without SLUICE_DATA_DIR" in check["detail"], check


# -- credentials in URL settings never reach the output --------------------------------------

CREDENTIAL_URL = "https://user:s3cret@chat.example.com/?api_key=abc"


def test_validate_json_shows_no_url_credentials(redis_url: str) -> None:
    result = CliRunner().invoke(
        app,
        ["validate", "--json"],
        env={
            "REDIS_URL": redis_url,
            "CHATWOOT_URL": CREDENTIAL_URL,
            "SLUICE_ALERT_WEBHOOK_URL": "https://hook:s3cret@127.0.0.1:1/alerts?token=abc",
            "SLUICE_ALERT_ALERTMANAGER_URL": "http://am:s3cret@127.0.0.1:1/?token=abc",
        },
    )
    report = json.loads(result.stdout)
    for output in (result.stdout, result.stderr):
        assert "s3cret" not in output
        assert "abc" not in output
    chatwoot = {c["name"]: c for c in report["checks"]}["chatwoot url"]
    assert chatwoot["outcome"] == "warn"  # credentials in the URL deserve a word
    assert chatwoot["detail"].startswith("https://user:***@chat.example.com/?api_key=***")


# -- retention memory against maxmemory (a private server: maxmemory is per server) ---------


@pytest.fixture
def small_redis() -> Iterator[str]:
    """A Redis of this test's own with maxmemory 64 MB (setting it on the shared server
    would make every other test's writes fail under noeviction)."""
    server = RedisServer()
    server.start()
    try:
        server.wait_ready()
        client = redis.Redis.from_url(server.url)
        try:
            client.config_set("maxmemory", 64 * 1024 * 1024)
        finally:
            client.close()
        yield server.url
    finally:
        server.stop()


def retention_check(env: dict[str, str]) -> dict[str, str]:
    _, report = validate(env)
    checks = {c["name"]: c for c in report["checks"]}  # type: ignore[union-attr]
    return checks["retention memory"]  # type: ignore[no-any-return]


def test_retention_over_maxmemory_warns_with_a_retention_that_fits(small_redis: str) -> None:
    # 30 jobs/s x 1 day x 730 B = 1.8 GiB, against 64 MiB
    check = retention_check({"REDIS_URL": small_redis, "SLUICE_PEAK_RATE": "30"})
    assert check["outcome"] == "warn", check
    assert "exceeds maxmemory 64.0 MiB" in check["detail"]
    assert "SLUICE_PEAK_RATE" in check["detail"]
    # at most 50 % of 64 MiB / (30 jobs/s x 730 B) = 1532 s
    assert "SLUICE_COMPLETED_RETENTION_S to at most 1532 " in check["detail"]


def test_retention_over_half_of_maxmemory_warns(small_redis: str) -> None:
    # 1 job/s x 60,000 s x 730 B = 41.8 MiB: under 64 MiB, over half of it
    check = retention_check(
        {
            "REDIS_URL": small_redis,
            "SLUICE_PEAK_RATE": "1",
            "SLUICE_COMPLETED_RETENTION_S": "60000",
        }
    )
    assert check["outcome"] == "warn" and "is over 50% of maxmemory" in check["detail"], check


def test_retention_that_fits_passes(small_redis: str) -> None:
    # 30 jobs/s x 10 min x 730 B = 12.5 MiB, 20 % of 64 MiB
    check = retention_check(
        {
            "REDIS_URL": small_redis,
            "SLUICE_PEAK_RATE": "30",
            "SLUICE_COMPLETED_RETENTION_S": "600",
        }
    )
    assert check["outcome"] == "pass", check
    assert "20% of maxmemory" in check["detail"]


def test_retention_projects_from_measured_throughput(small_redis: str, queue_name: str) -> None:
    """Without SLUICE_PEAK_RATE (and no rate limit) the recent throughput of the queue is
    the rate: 600 jobs completed within the last 5 minutes are 2 jobs/s, which kept a day
    take 126 MB, more than the 64 MiB."""

    async def complete(jobs: int) -> None:
        client = aioredis.Redis.from_url(small_redis)
        queue = Queue(queue_name, redis=client)
        done = asyncio.Event()
        handled = 0

        async def handler(job: Job) -> None:
            nonlocal handled
            handled += 1
            if handled == jobs:
                done.set()

        worker = Worker(queue, handler, concurrency=10, handle_signals=False, idle_poll_s=0.2)
        task = asyncio.create_task(worker.run())
        try:
            await queue.enqueue_many(EnqueueRequest(key=f"c{i}", payload={}) for i in range(jobs))
            await asyncio.wait_for(done.wait(), 30)
        finally:
            await worker.stop()
            await task
            await client.aclose()

    env = {"REDIS_URL": small_redis, "SLUICE_QUEUE": queue_name, "QUEUE_RATE_LIMIT": "0"}
    assert retention_check(env)["outcome"] == "pass"  # nothing measured yet: nothing to say
    asyncio.run(complete(600))
    check = retention_check(env)
    assert check["outcome"] == "warn", check
    assert "2 jobs/s (measured recent throughput)" in check["detail"]
