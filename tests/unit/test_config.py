"""Settings: origin defaults, the legacy profile, readable errors, safe logging."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sluice.settings.config import (
    ConfigError,
    Settings,
    load_settings,
    log_effective_profile,
    redact_url,
)


def test_defaults_are_the_origin_notes() -> None:
    settings = load_settings({})

    assert settings.profile == "optimized"
    assert settings.worker_concurrency == 10
    assert settings.queue_rate_limit == 30
    assert settings.sla_warning_threshold_ms == 10_000
    assert settings.sla_critical_threshold_ms == 30_000
    assert settings.redis_pool_enabled is True
    assert settings.redis_pool_max_connections == 20
    assert settings.redis_pool_min_connections == 5
    assert settings.queue_optimization_enabled is True
    assert settings.redis_url is None
    assert settings.data_dir is None
    assert settings.queue == "inbound"
    assert settings.lease_ms == 5_000
    assert settings.heartbeat_ms == 1_000
    assert settings.max_attempts == 5
    assert settings.completed_retention_s == 24 * 3600  # a day: docs/engine.md, Memory
    assert settings.shutdown_grace_s == 10
    assert settings.redis_pool_timeout_s == 5
    assert settings.log_format == "text"
    assert settings.explicit_variables == ()


def test_every_variable_is_read_by_its_exact_name() -> None:
    settings = load_settings(
        {
            "WORKER_CONCURRENCY": "12",
            "QUEUE_RATE_LIMIT": "0",
            "SLA_WARNING_THRESHOLD": "5000",
            "SLA_CRITICAL_THRESHOLD": "9000",
            "REDIS_POOL_ENABLED": "false",
            "REDIS_POOL_MAX_CONNECTIONS": "8",
            "REDIS_POOL_MIN_CONNECTIONS": "2",
            "QUEUE_OPTIMIZATION_ENABLED": "true",
            "REDIS_URL": "unix:///run/redis.sock",
            "SLUICE_DATA_DIR": "/var/lib/sluice",
            "SLUICE_QUEUE": "support",
            "SLUICE_PARTITIONS": "3",
            "SLUICE_LEASE_MS": "8000",
            "SLUICE_HEARTBEAT_MS": "2000",
            "SLUICE_MAX_ATTEMPTS": "7",
            "SLUICE_COMPLETED_RETENTION_S": "3600",
            "SLUICE_SHUTDOWN_GRACE_S": "2.5",
            "REDIS_POOL_TIMEOUT_S": "0.5",
            "SLUICE_LOG_FORMAT": "JSON",
        }
    )

    assert (settings.worker_concurrency, settings.queue_rate_limit) == (12, 0)
    assert (settings.sla_warning_threshold_ms, settings.sla_critical_threshold_ms) == (5000, 9000)
    assert settings.redis_pool_enabled is False
    assert (settings.redis_pool_min_connections, settings.redis_pool_max_connections) == (2, 8)
    assert settings.redis_url == "unix:///run/redis.sock"
    assert settings.data_dir == Path("/var/lib/sluice")
    assert settings.queue == "support" and settings.partitions == 3
    assert (settings.lease_ms, settings.heartbeat_ms, settings.max_attempts) == (8000, 2000, 7)
    assert settings.completed_retention_s == 3600
    assert (settings.shutdown_grace_s, settings.redis_pool_timeout_s) == (2.5, 0.5)
    assert settings.log_format == "json"


def test_names_are_case_sensitive_and_unprefixed() -> None:
    settings = load_settings({"worker_concurrency": "4", "SLUICE_WORKER_CONCURRENCY": "4"})

    assert settings.worker_concurrency == 10


def test_a_mapping_is_read_instead_of_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKER_CONCURRENCY", "7")

    assert load_settings().worker_concurrency == 7
    assert load_settings({}).worker_concurrency == 10


def test_empty_value_means_unset() -> None:
    settings = load_settings({"REDIS_URL": "", "WORKER_CONCURRENCY": ""})

    assert settings.redis_url is None
    assert settings.worker_concurrency == 10


def test_legacy_profile_changes_the_three_defaults() -> None:
    settings = load_settings({"QUEUE_OPTIMIZATION_ENABLED": "false"})

    assert settings.profile == "legacy"
    assert settings.worker_concurrency == 3
    assert settings.queue_rate_limit == 10
    assert settings.redis_pool_enabled is False
    # Everything else keeps the origin defaults.
    assert settings.redis_pool_max_connections == 20
    assert settings.sla_critical_threshold_ms == 30_000


@pytest.mark.parametrize(
    ("variable", "raw", "field", "expected"),
    [
        ("WORKER_CONCURRENCY", "5", "worker_concurrency", 5),
        ("QUEUE_RATE_LIMIT", "25", "queue_rate_limit", 25),
        ("REDIS_POOL_ENABLED", "true", "redis_pool_enabled", True),
    ],
)
def test_explicit_values_win_over_the_legacy_profile(
    variable: str, raw: str, field: str, expected: object
) -> None:
    settings = load_settings({"QUEUE_OPTIMIZATION_ENABLED": "false", variable: raw})

    assert settings.profile == "legacy"
    assert getattr(settings, field) == expected
    assert variable in settings.explicit_variables
    # The two variables not set still follow the legacy profile.
    legacy = {"worker_concurrency": 3, "queue_rate_limit": 10, "redis_pool_enabled": False}
    del legacy[field]
    assert {name: getattr(settings, name) for name in legacy} == legacy


def test_explicit_value_equal_to_the_optimized_default_still_wins() -> None:
    settings = load_settings({"QUEUE_OPTIMIZATION_ENABLED": "0", "WORKER_CONCURRENCY": "10"})

    assert settings.worker_concurrency == 10


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY"),
        ({"WORKER_CONCURRENCY": "-2"}, "WORKER_CONCURRENCY"),
        ({"WORKER_CONCURRENCY": "ten"}, "WORKER_CONCURRENCY"),
        ({"WORKER_CONCURRENCY": "2.5"}, "WORKER_CONCURRENCY"),
        ({"QUEUE_RATE_LIMIT": "-1"}, "QUEUE_RATE_LIMIT"),
        ({"QUEUE_RATE_LIMIT": "fast"}, "QUEUE_RATE_LIMIT"),
        ({"SLA_WARNING_THRESHOLD": "-5"}, "SLA_WARNING_THRESHOLD"),
        ({"SLA_CRITICAL_THRESHOLD": "30s"}, "SLA_CRITICAL_THRESHOLD"),
        ({"REDIS_POOL_ENABLED": "maybe"}, "REDIS_POOL_ENABLED"),
        ({"QUEUE_OPTIMIZATION_ENABLED": "perhaps"}, "QUEUE_OPTIMIZATION_ENABLED"),
        (
            {"REDIS_POOL_MAX_CONNECTIONS": "0", "REDIS_POOL_MIN_CONNECTIONS": "0"},
            "REDIS_POOL_MAX_CONNECTIONS",
        ),
        ({"REDIS_POOL_MAX_CONNECTIONS": "-3"}, "REDIS_POOL_MAX_CONNECTIONS"),
        ({"REDIS_POOL_MIN_CONNECTIONS": "-1"}, "REDIS_POOL_MIN_CONNECTIONS"),
        ({"REDIS_POOL_MIN_CONNECTIONS": "21"}, "REDIS_POOL_MIN_CONNECTIONS"),
        ({"REDIS_POOL_TIMEOUT_S": "0"}, "REDIS_POOL_TIMEOUT_S"),
        ({"REDIS_POOL_TIMEOUT_S": "nan"}, "REDIS_POOL_TIMEOUT_S"),
        ({"SLUICE_LEASE_MS": "0"}, "SLUICE_LEASE_MS"),
        ({"SLUICE_HEARTBEAT_MS": "5000"}, "SLUICE_HEARTBEAT_MS"),
        ({"SLUICE_MAX_ATTEMPTS": "0"}, "SLUICE_MAX_ATTEMPTS"),
        ({"SLUICE_COMPLETED_RETENTION_S": "-1"}, "SLUICE_COMPLETED_RETENTION_S"),
        ({"SLUICE_SHUTDOWN_GRACE_S": "-1"}, "SLUICE_SHUTDOWN_GRACE_S"),
        ({"SLUICE_LOG_FORMAT": "xml"}, "SLUICE_LOG_FORMAT"),
        ({"SLUICE_QUEUE": "{inbound}"}, "SLUICE_QUEUE"),
        ({"SLUICE_PARTITIONS": "0"}, "SLUICE_PARTITIONS"),
        ({"SLUICE_PARTITIONS": "many"}, "SLUICE_PARTITIONS"),
        ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL"),
        ({"WORKER_CONCURRENCY_MODE": "auto"}, "WORKER_CONCURRENCY_MODE"),
        ({"WORKER_CONCURRENCY_MIN": "0"}, "WORKER_CONCURRENCY_MIN"),
        ({"WORKER_CONCURRENCY_COOLDOWN_S": "0"}, "WORKER_CONCURRENCY_COOLDOWN_S"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)

    assert variable in str(caught.value)
    assert variable in caught.value.variables
    assert isinstance(caught.value, ValueError)


def test_warning_must_be_below_critical_with_both_values_in_the_message() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"SLA_WARNING_THRESHOLD": "30000", "SLA_CRITICAL_THRESHOLD": "10000"})

    assert str(caught.value) == (
        "SLA_WARNING_THRESHOLD (30000) must be lower than SLA_CRITICAL_THRESHOLD (10000)"
    )


def test_equal_thresholds_are_rejected() -> None:
    with pytest.raises(ConfigError, match="SLA_WARNING_THRESHOLD"):
        load_settings({"SLA_WARNING_THRESHOLD": "20000", "SLA_CRITICAL_THRESHOLD": "20000"})


def test_min_above_max_connections_names_both() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"REDIS_POOL_MIN_CONNECTIONS": "6", "REDIS_POOL_MAX_CONNECTIONS": "4"})

    assert caught.value.variables == ("REDIS_POOL_MIN_CONNECTIONS", "REDIS_POOL_MAX_CONNECTIONS")


def test_adaptive_concurrency_is_off_by_default_and_its_bounds_are_checked() -> None:
    settings = load_settings({})
    assert settings.worker_concurrency_mode == "static"
    assert (settings.worker_concurrency_min, settings.worker_concurrency_max) == (1, 50)
    on = load_settings({"WORKER_CONCURRENCY_MODE": " Adaptive ", "WORKER_CONCURRENCY_MAX": "8"})
    assert on.worker_concurrency_mode == "adaptive" and on.worker_concurrency_max == 8
    assert "adaptive 1-8 slots (from 10)" in on.summary()
    with pytest.raises(ConfigError) as caught:
        load_settings({"WORKER_CONCURRENCY_MIN": "9", "WORKER_CONCURRENCY_MAX": "4"})
    assert caught.value.variables == ("WORKER_CONCURRENCY_MIN", "WORKER_CONCURRENCY_MAX")


def test_one_invalid_variable_is_reported_without_profile_noise() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"WORKER_CONCURRENCY": "zero"})

    assert caught.value.variables == ("WORKER_CONCURRENCY",)
    assert "QUEUE_RATE_LIMIT" not in str(caught.value)


def test_several_invalid_variables_are_all_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"WORKER_CONCURRENCY": "0", "SLUICE_MAX_ATTEMPTS": "x"})

    assert set(caught.value.variables) == {"WORKER_CONCURRENCY", "SLUICE_MAX_ATTEMPTS"}


def test_direct_construction_also_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="WORKER_CONCURRENCY"):
        Settings(WORKER_CONCURRENCY=0)


def test_settings_are_immutable() -> None:
    settings = load_settings({})

    with pytest.raises(ValueError, match="frozen"):
        settings.worker_concurrency = 99  # type: ignore[misc]


def test_describe_masks_the_redis_password() -> None:
    settings = load_settings({"REDIS_URL": "redis://:hunter2@host:6379/0"})

    summary = settings.describe()

    assert "hunter2" not in repr(summary)
    assert summary["REDIS_URL"] == "redis://:***@host:6379/0"
    assert summary["profile"] == "optimized"
    assert summary["WORKER_CONCURRENCY"] == 10


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://user:hunter2@host:6379/0", "redis://user:***@host:6379/0"),
        ("rediss://:hunter2@host/1", "rediss://:***@host/1"),
        ("unix:///tmp/r.sock?db=0&password=hunter2", "unix:///tmp/r.sock?db=0&password=***"),
        ("unix:///tmp/r.sock", "unix:///tmp/r.sock"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_describe_masks_variables_named_like_secrets() -> None:
    class WithSecrets(Settings):
        chatwoot_api_token: str | None = None
        admin_password: str | None = None

    settings = WithSecrets(chatwoot_api_token="tok-123", admin_password="pw-456")

    summary = settings.describe()

    assert summary["CHATWOOT_API_TOKEN"] == "***"
    assert summary["ADMIN_PASSWORD"] == "***"
    assert "tok-123" not in repr(summary)
    assert "pw-456" not in repr(summary)


SECRET_ENV = {
    "QUEUE_OPTIMIZATION_ENABLED": "false",
    "REDIS_URL": "redis://default:hunter2@redis.internal:6379/0",
    "CHATWOOT_URL": "https://user:s3cret@chat.example.com/?api_key=k3y",
    "CHATWOOT_API_TOKEN": "tok-123",
    "CHATWOOT_WEBHOOK_SECRET": "whsec-456",
    "SLUICE_ADMIN_TOKEN": "adm-789",
}
SECRETS = ("hunter2", "s3cret", "k3y", "tok-123", "whsec-456", "adm-789")


def test_startup_config_is_one_short_line_at_info_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The INFO line is what an operator reads at startup: short, one line, no credentials
    (it used to be every variable, about 1,000 characters)."""
    settings = load_settings(SECRET_ENV)
    logger = logging.getLogger("sluice.test.config")

    with caplog.at_level(logging.INFO, logger=logger.name):
        log_effective_profile(settings, logger)

    assert len(caplog.records) == 1
    record = caplog.records[0]
    line = record.getMessage()
    assert record.levelno == logging.INFO
    assert "\n" not in line
    assert len(line) <= 250, (len(line), line)
    assert line == (
        "sluice config: profile legacy, queue inbound, redis redis.internal:6379/0, 3 slots, "
        "10 jobs/s, no pool, SLA 10/30 s, chatwoot chat.example.com; set: CHATWOOT_API_TOKEN, "
        "CHATWOOT_URL, CHATWOOT_WEBHOOK_SECRET and 3 more"
    )
    for secret in SECRETS:
        assert secret not in line
        assert secret not in repr(record.__dict__)


def test_startup_config_stays_short_with_many_variables_set(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {
        **SECRET_ENV,
        "REDIS_URL": "rediss://default:hunter2@redis-primary.eu-west-1.example.com:6380/3",
        "WORKER_CONCURRENCY": "25",
        "QUEUE_RATE_LIMIT": "0",
        "SLA_WARNING_THRESHOLD": "2500",
        "SLUICE_QUEUE": "support-inbound",
        "SLUICE_LEASE_MS": "8000",
        "SLUICE_MAX_ATTEMPTS": "7",
        "SLUICE_BURST_MAX": "5",
        "CHATWOOT_ACCOUNT_ID": "3",
    }
    logger = logging.getLogger("sluice.test.config")

    with caplog.at_level(logging.INFO, logger=logger.name):
        log_effective_profile(load_settings(env), logger)

    line = caplog.records[0].getMessage()
    assert len(line) <= 300, (len(line), line)
    assert "redis redis-primary.eu-west-1.example.com:6380/3 (TLS)" in line
    assert "25 slots, no rate limit" in line
    assert "SLA 2.5/30 s" in line
    assert line.endswith(" more")  # the variables set are named as far as room allows
    for secret in SECRETS:
        assert secret not in line


@pytest.mark.parametrize(
    ("env", "where"),
    [
        ({}, "redis embedded (in memory)"),
        ({"SLUICE_DATA_DIR": "/var/lib/sluice"}, "redis embedded (persistent)"),
        ({"REDIS_URL": "unix:///run/redis/redis.sock"}, "redis /run/redis/redis.sock"),
        (
            {"REDIS_URL": "unix:///tmp/sluice-valkey-d8_u4z7n/valkey.sock"},
            "redis embedded (in memory)",  # `sluice up`'s server, passed on to its children
        ),
        ({"REDIS_URL": "redis://:hunter2@10.0.0.5:6379"}, "redis 10.0.0.5:6379,"),
    ],
)
def test_startup_config_says_where_redis_is(env: dict[str, str], where: str) -> None:
    summary = load_settings(env).summary()
    assert where in summary
    assert "hunter2" not in summary


def test_startup_config_names_the_variables_set() -> None:
    assert load_settings({}).summary().endswith("; set: none")
    assert load_settings({"REDIS_URL": "redis://h:6379"}).summary().endswith("; set: REDIS_URL")


def test_full_config_is_logged_at_debug_with_secrets_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings(SECRET_ENV)
    logger = logging.getLogger("sluice.test.config")

    with caplog.at_level(logging.DEBUG, logger=logger.name):
        log_effective_profile(settings, logger)

    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.DEBUG]
    full = caplog.records[1]
    line = full.getMessage()
    assert line.startswith("sluice effective configuration: profile=legacy ")
    assert "WORKER_CONCURRENCY=3" in line
    assert "QUEUE_RATE_LIMIT=10" in line
    assert "REDIS_POOL_ENABLED=false" in line
    assert "REDIS_URL=redis://default:***@redis.internal:6379/0" in line
    assert "CHATWOOT_API_TOKEN=***" in line
    assert full.fields["config"]["WORKER_CONCURRENCY"] == 3  # type: ignore[attr-defined]
    for secret in SECRETS:
        assert secret not in line
        assert secret not in repr(full.__dict__)
