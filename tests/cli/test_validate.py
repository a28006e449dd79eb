"""`sluice validate` against the real Redis: passes, and fails loudly when it should."""

from __future__ import annotations

import json

import redis
from typer.testing import CliRunner

from sluice.cli import app


def validate(env: dict[str, str]) -> tuple[int, dict[str, object]]:
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
