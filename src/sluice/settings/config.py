"""Settings and profiles.

Every knob of the origin note (the configuration of the system Sluice replaces, README.md)
keeps its variable name and its default, so an operator's existing environment works
unchanged. Two profiles exist:

* ``optimized`` (QUEUE_OPTIMIZATION_ENABLED=true, the default): 10 slots, 30 jobs/s, pool on;
* ``legacy`` (QUEUE_OPTIMIZATION_ENABLED=false): 3 slots, 10 jobs/s, no pool — the one-switch
  rollback of the origin note.

The profile only changes *defaults*: a variable set explicitly in the environment always wins,
so an operator can roll back and still pin, say, WORKER_CONCURRENCY=5.

A bad value must stop Sluice at startup with a message naming the variable, never a pydantic
traceback naming a Python field: every failure is a :class:`ConfigError`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    SettingsConfigDict,
)

from sluice.errors import ConfigError
from sluice.settings.env import SECRET_VARIABLE, EnvSettings, reading
from sluice.settings.redact import MASK, redact_url, redact_urls_in

__all__ = [
    "LEGACY_PROFILE",
    "OPTIMIZED_PROFILE",
    "ConfigError",
    "Profile",
    "Settings",
    "load_settings",
    "log_effective_profile",
    "redact_url",
    "redact_urls_in",
]

Profile = Literal["optimized", "legacy"]

#: Defaults that depend on QUEUE_OPTIMIZATION_ENABLED, by environment variable.
OPTIMIZED_PROFILE: Mapping[str, int | bool] = {
    "WORKER_CONCURRENCY": 10,
    "QUEUE_RATE_LIMIT": 30,
    "REDIS_POOL_ENABLED": True,
}
LEGACY_PROFILE: Mapping[str, int | bool] = {
    "WORKER_CONCURRENCY": 3,
    "QUEUE_RATE_LIMIT": 10,
    "REDIS_POOL_ENABLED": False,
}

_REDIS_SCHEMES = ("redis", "rediss", "unix")
# Characters the startup summary spends naming the variables that were set (the rest are
# counted), so that the line stays short however many there are.
_SUMMARY_NAMES_CHARS = 80
# Queue names end up inside a Redis Cluster hash tag `{name}`: braces would break the tag.
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")

# The environment that the next Settings() reads; None means os.environ. A context variable
# (not a global) so concurrent load_settings() calls in tests cannot see each other's maps.


def _profile_default(variable: str) -> Any:
    """Default factory reading QUEUE_OPTIMIZATION_ENABLED, which is validated first.

    A factory (rather than rewriting fields after validation) keeps ``model_fields_set``
    honest: it then holds exactly the variables the environment set.
    """

    def factory(data: dict[str, Any]) -> int | bool:
        optimized = data.get("queue_optimization_enabled", True)
        return (OPTIMIZED_PROFILE if optimized else LEGACY_PROFILE)[variable]

    return factory


class Settings(EnvSettings):
    """Every setting of one Sluice process, named by its environment variable.

    Frozen: live changes (concurrency, rate limit, profile) go through Redis, so that every
    process sees them, never by mutating this object.
    """

    model_config = SettingsConfigDict(
        case_sensitive=True,  # the variable names are exactly those of the origin note
        env_ignore_empty=True,  # `VAR=` in a .env file means "not set", not "invalid"
        extra="ignore",
        frozen=True,
    )

    # Validated first: the profile-dependent defaults below read it.
    queue_optimization_enabled: bool = Field(True, validation_alias="QUEUE_OPTIMIZATION_ENABLED")

    worker_concurrency: int = Field(
        default_factory=_profile_default("WORKER_CONCURRENCY"),
        ge=1,
        validation_alias="WORKER_CONCURRENCY",
    )
    # Adaptive concurrency (docs/adaptive-concurrency.md): static keeps WORKER_CONCURRENCY
    # slots per worker; adaptive lets one controller per queue set the global slot count,
    # between WORKER_CONCURRENCY_MIN and _MAX per live worker.
    worker_concurrency_mode: Literal["static", "adaptive"] = Field(
        "static", validation_alias="WORKER_CONCURRENCY_MODE"
    )
    worker_concurrency_min: int = Field(1, ge=1, validation_alias="WORKER_CONCURRENCY_MIN")
    worker_concurrency_max: int = Field(
        50, ge=1, le=10_000, validation_alias="WORKER_CONCURRENCY_MAX"
    )
    worker_concurrency_cooldown_s: float = Field(
        5.0, gt=0, allow_inf_nan=False, validation_alias="WORKER_CONCURRENCY_COOLDOWN_S"
    )
    queue_rate_limit: int = Field(
        default_factory=_profile_default("QUEUE_RATE_LIMIT"),
        ge=0,
        validation_alias="QUEUE_RATE_LIMIT",
        description="jobs per second across all workers; 0 = unlimited",
    )
    redis_pool_enabled: bool = Field(
        default_factory=_profile_default("REDIS_POOL_ENABLED"),
        validation_alias="REDIS_POOL_ENABLED",
    )

    sla_warning_threshold_ms: int = Field(10_000, ge=0, validation_alias="SLA_WARNING_THRESHOLD")
    sla_critical_threshold_ms: int = Field(30_000, ge=0, validation_alias="SLA_CRITICAL_THRESHOLD")

    redis_pool_max_connections: int = Field(20, ge=1, validation_alias="REDIS_POOL_MAX_CONNECTIONS")
    redis_pool_min_connections: int = Field(5, ge=0, validation_alias="REDIS_POOL_MIN_CONNECTIONS")
    redis_pool_timeout_s: float = Field(
        5.0, gt=0, allow_inf_nan=False, validation_alias="REDIS_POOL_TIMEOUT_S"
    )
    redis_url: str | None = Field(None, validation_alias="REDIS_URL")
    redis_cluster: bool | None = Field(
        None,
        validation_alias="REDIS_CLUSTER",
        description="REDIS_URL names a node of a Redis/Valkey Cluster; unset = ask the server",
    )

    data_dir: Path | None = Field(None, validation_alias="SLUICE_DATA_DIR")
    queue: str = Field("inbound", validation_alias="SLUICE_QUEUE")
    # Conversations spread over this many partitions, each its own hash tag (a cluster puts
    # them on different shards); 1 is the unpartitioned layout (docs/partitions.md).
    partitions: int = Field(1, ge=1, le=1024, validation_alias="SLUICE_PARTITIONS")
    lease_ms: int = Field(5_000, ge=1, validation_alias="SLUICE_LEASE_MS")
    heartbeat_ms: int = Field(1_000, ge=1, validation_alias="SLUICE_HEARTBEAT_MS")
    max_attempts: int = Field(5, ge=1, validation_alias="SLUICE_MAX_ATTEMPTS")
    # A day, not a week: each completed job holds about 730 B of Redis memory for this long
    # (docs/engine.md, Memory), so 30 jobs/s keep 1.8 GiB for a day, 12 GiB for a week, under
    # noeviction. The timelines serve diagnosis (dashboard search, job lookups); a day covers
    # yesterday's complaint. `sluice validate` warns when the projection nears maxmemory.
    completed_retention_s: int = Field(
        24 * 3600, ge=0, validation_alias="SLUICE_COMPLETED_RETENTION_S"
    )
    # Peak completed jobs per second to size the retention against (`sluice validate`);
    # unset: the larger of the measured recent throughput and QUEUE_RATE_LIMIT.
    peak_rate: float | None = Field(
        None, gt=0, allow_inf_nan=False, validation_alias="SLUICE_PEAK_RATE"
    )
    # How long a Chatwoot message id is remembered: a redelivery later than this is a new
    # message. Chatwoot retries within seconds, so the day is for replays by hand.
    dedupe_ttl_s: int = Field(24 * 3600, ge=1, validation_alias="SLUICE_DEDUPE_TTL_S")
    enqueue_wait_replicas: int = Field(0, ge=0, validation_alias="SLUICE_ENQUEUE_WAIT_REPLICAS")
    enqueue_wait_timeout_ms: int = Field(
        1000, ge=1, validation_alias="SLUICE_ENQUEUE_WAIT_TIMEOUT_MS"
    )
    shutdown_grace_s: float = Field(
        10.0, ge=0, allow_inf_nan=False, validation_alias="SLUICE_SHUTDOWN_GRACE_S"
    )
    log_format: Literal["text", "json"] = Field("text", validation_alias="SLUICE_LOG_FORMAT")

    admin_token: SecretStr | None = Field(None, validation_alias="SLUICE_ADMIN_TOKEN")
    api_host: str = Field("127.0.0.1", validation_alias="SLUICE_API_HOST")
    api_port: int = Field(8000, ge=0, le=65535, validation_alias="SLUICE_API_PORT")
    # `sluice serve` processes on the one port; unset: one per core (`sluice up` runs one).
    api_workers: int | None = Field(None, ge=1, le=256, validation_alias="SLUICE_API_WORKERS")
    monitoring_enabled: bool = Field(True, validation_alias="SLUICE_MONITORING")
    sla_objective: float = Field(
        0.95, gt=0, lt=1, allow_inf_nan=False, validation_alias="SLUICE_SLA_OBJECTIVE"
    )

    chatwoot_url: str | None = Field(None, validation_alias="CHATWOOT_URL")
    chatwoot_api_token: SecretStr | None = Field(None, validation_alias="CHATWOOT_API_TOKEN")
    chatwoot_webhook_secret: SecretStr | None = Field(
        None, validation_alias="CHATWOOT_WEBHOOK_SECRET"
    )
    chatwoot_account_id: int | None = Field(None, ge=1, validation_alias="CHATWOOT_ACCOUNT_ID")
    # Answer `open` conversations nobody handles too: only for inboxes without an agent bot
    # (their conversations start open); in a bot inbox `open` means handed to humans.
    chatwoot_answer_open: bool = Field(False, validation_alias="CHATWOOT_ANSWER_OPEN")
    # Post replies as this agent bot (sender_type AgentBot) when the token is a user's, so
    # they do not count as that user's replies (first reply time, reports).
    chatwoot_agent_bot_id: int | None = Field(None, ge=1, validation_alias="CHATWOOT_AGENT_BOT_ID")
    # Schedule a message by its conversation's priority in Chatwoot (urgent/high/medium/low
    # -> urgent/high/normal/low); false: every message is `normal`.
    priority_from_chatwoot: bool = Field(True, validation_alias="SLUICE_PRIORITY_FROM_CHATWOOT")
    # Deadlines from what was promised (docs/priorities.md), each off by default: the
    # customer's first unanswered message (`waiting_since`) starts the clock; a Chatwoot SLA
    # policy's first/next response threshold (business hours honoured) may tighten the
    # deadline; a YAML rules file sets class/target by inbox, label, channel, contact.
    deadline_from_waiting_since: bool = Field(
        False, validation_alias="SLUICE_DEADLINE_FROM_WAITING_SINCE"
    )
    deadline_from_sla: bool = Field(False, validation_alias="SLUICE_DEADLINE_FROM_SLA")
    priority_rules: str | None = Field(None, validation_alias="SLUICE_PRIORITY_RULES")
    waiting_since_max_age_s: float = Field(
        3_600.0,
        gt=0,
        le=30 * 86_400,
        allow_inf_nan=False,
        validation_alias="SLUICE_WAITING_SINCE_MAX_AGE_S",
    )
    # Connections a process keeps to Chatwoot's API; more concurrent calls wait their turn
    # (Chatwoot's Puma serves a few threads per process: more connections only queue there).
    chatwoot_max_connections: int = Field(
        32, ge=1, le=1024, validation_alias="CHATWOOT_MAX_CONNECTIONS"
    )
    webhook_max_bytes: int = Field(
        1_048_576, ge=1024, le=64 * 1_048_576, validation_alias="SLUICE_WEBHOOK_MAX_BYTES"
    )
    burst_max: int = Field(10, ge=1, le=100, validation_alias="SLUICE_BURST_MAX")
    # Tenant fairness (docs/fairness.md): per-account caps on turns in flight and on starts
    # per second, work-conserving (an account only waits while another's lane can take the
    # slot); 0 = that cap off, both 0 = today's earliest-deadline-first for everyone.
    account_concurrency: int = Field(0, ge=0, validation_alias="SLUICE_ACCOUNT_CONCURRENCY")
    account_rate: float = Field(
        0.0, ge=0, allow_inf_nan=False, validation_alias="SLUICE_ACCOUNT_RATE"
    )
    # The same per Chatwoot inbox (its id travels in the job's payload).
    inbox_concurrency: int = Field(0, ge=0, validation_alias="SLUICE_INBOX_CONCURRENCY")
    inbox_rate: float = Field(0.0, ge=0, allow_inf_nan=False, validation_alias="SLUICE_INBOX_RATE")
    handoff_budget_ms: int = Field(3_000, ge=0, validation_alias="SLUICE_HANDOFF_BUDGET_MS")

    @field_validator("worker_concurrency_mode", mode="before")
    @classmethod
    def _lowercase_mode(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lowercase_log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("queue")
    @classmethod
    def _check_queue_name(cls, value: str) -> str:
        if not _QUEUE_NAME.match(value):
            raise ConfigError(
                f"SLUICE_QUEUE ({value!r}) must be 1-100 characters of letters, digits, "
                "'_', '.', ':' or '-' (it becomes part of Redis key names)",
                ("SLUICE_QUEUE",),
            )
        return value

    @field_validator("priority_rules")
    @classmethod
    def _check_priority_rules(cls, value: str | None) -> str | None:
        """A rules file that does not load refuses the start, naming file and line."""
        if value is None or not value.strip():
            return None
        from sluice.deadlines.rules import RulesError, load_rules_file

        try:
            load_rules_file(value)
        except RulesError as exc:
            raise ConfigError(f"SLUICE_PRIORITY_RULES: {exc}", ("SLUICE_PRIORITY_RULES",)) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            scheme = urlsplit(value).scheme
        except ValueError:
            scheme = ""
        if scheme not in _REDIS_SCHEMES:
            raise ConfigError(
                f"REDIS_URL ({redact_url(value)}) must start with redis://, rediss:// or unix://",
                ("REDIS_URL",),
            )
        return value

    @model_validator(mode="after")
    def _check_relations(self) -> Settings:
        if self.sla_warning_threshold_ms >= self.sla_critical_threshold_ms:
            raise ConfigError(
                f"SLA_WARNING_THRESHOLD ({self.sla_warning_threshold_ms}) must be lower than "
                f"SLA_CRITICAL_THRESHOLD ({self.sla_critical_threshold_ms})",
                ("SLA_WARNING_THRESHOLD", "SLA_CRITICAL_THRESHOLD"),
            )
        if self.worker_concurrency_min > self.worker_concurrency_max:
            raise ConfigError(
                f"WORKER_CONCURRENCY_MIN ({self.worker_concurrency_min}) must not exceed "
                f"WORKER_CONCURRENCY_MAX ({self.worker_concurrency_max})",
                ("WORKER_CONCURRENCY_MIN", "WORKER_CONCURRENCY_MAX"),
            )
        if self.redis_pool_min_connections > self.redis_pool_max_connections:
            raise ConfigError(
                f"REDIS_POOL_MIN_CONNECTIONS ({self.redis_pool_min_connections}) must not exceed "
                f"REDIS_POOL_MAX_CONNECTIONS ({self.redis_pool_max_connections})",
                ("REDIS_POOL_MIN_CONNECTIONS", "REDIS_POOL_MAX_CONNECTIONS"),
            )
        if self.heartbeat_ms >= self.lease_ms:
            # A lease must be renewed before it runs out, or every job would be re-delivered.
            raise ConfigError(
                f"SLUICE_HEARTBEAT_MS ({self.heartbeat_ms}) must be lower than "
                f"SLUICE_LEASE_MS ({self.lease_ms})",
                ("SLUICE_HEARTBEAT_MS", "SLUICE_LEASE_MS"),
            )
        return self

    @property
    def profile(self) -> Profile:
        """The profile whose defaults apply; explicit variables may still override it."""
        return "optimized" if self.queue_optimization_enabled else "legacy"

    @property
    def explicit_variables(self) -> tuple[str, ...]:
        """Variables that were set (environment or init), as opposed to defaulted."""
        return tuple(sorted(_env_name(name, type(self)) for name in self.model_fields_set))

    def describe(self) -> dict[str, object]:
        """Effective values keyed by variable, safe to log: secrets and URL passwords masked."""
        summary: dict[str, object] = {"profile": self.profile}
        for name in type(self).model_fields:
            variable = _env_name(name, type(self))
            summary[variable] = _loggable(variable, getattr(self, name))
        summary["explicit"] = list(self.explicit_variables)
        return summary

    def summary(self) -> str:
        """The configuration an operator scans a log for, in one short line: profile, queue,
        where Redis is (host and port only, never credentials), slots, rate, pool, SLA
        thresholds, Chatwoot's host, and which variables were set. :meth:`describe` has
        every value."""
        rate = f"{self.queue_rate_limit} jobs/s" if self.queue_rate_limit else "no rate limit"
        pool = (
            f"pool {self.redis_pool_min_connections}-{self.redis_pool_max_connections}"
            if self.redis_pool_enabled
            else "no pool"
        )
        warn, crit = self.sla_warning_threshold_ms / 1000, self.sla_critical_threshold_ms / 1000
        parts = [
            f"profile {self.profile}",
            f"queue {self.queue}",
            f"redis {self._redis_where()}",
            (
                f"{self.worker_concurrency} slots"
                if self.worker_concurrency_mode == "static"
                else f"adaptive {self.worker_concurrency_min}-{self.worker_concurrency_max} "
                f"slots (from {self.worker_concurrency})"
            ),
            rate,
            pool,
            f"SLA {warn:g}/{crit:g} s",
        ]
        if self.chatwoot_url:
            parts.append(f"chatwoot {_host_of(self.chatwoot_url)}")
        return f"{', '.join(parts)}; set: {_names_within(self.explicit_variables)}"

    def _redis_where(self) -> str:
        from sluice.redis.embedded import is_embedded_socket

        parts = urlsplit(self.redis_url or "")
        # Unset, or the embedded server of a parent process (`sluice up` passes its URL on).
        if not self.redis_url or (parts.scheme == "unix" and is_embedded_socket(parts.path)):
            return "embedded (" + ("persistent" if self.data_dir else "in memory") + ")"
        if parts.scheme == "unix":
            return parts.path
        where = _host_of(self.redis_url) + (parts.path if parts.path not in ("", "/") else "")
        return where + (" (TLS)" if parts.scheme == "rediss" else "")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``env`` (None: the process environment).

    A mapping is read *instead of* os.environ, so tests and embedders get exactly what they
    pass, whatever the surrounding shell exports.
    """
    with reading(env):
        return Settings()


def log_effective_profile(settings: Settings, logger: logging.Logger) -> None:
    """Log the configuration at startup, so a rollback or a wrong value shows in the logs:
    one short line at INFO (:meth:`Settings.summary`), and every effective value (secrets
    masked) at DEBUG, as text and, for JSON logs, as the ``config`` field."""
    logger.info("sluice config: %s", settings.summary())
    if not logger.isEnabledFor(logging.DEBUG):
        return
    described = settings.describe()
    values = " ".join(
        f"{key}={_format(value)}" for key, value in described.items() if key != "explicit"
    )
    explicit = ",".join(settings.explicit_variables) or "-"
    logger.debug(
        "sluice effective configuration: %s explicit=%s",
        values,
        explicit,
        extra={"fields": {"config": described}},
    )


def _names_within(names: tuple[str, ...], budget: int = _SUMMARY_NAMES_CHARS) -> str:
    """``A, B and 3 more``: as many names as fit in ``budget`` characters, the rest counted."""
    if not names:
        return "none"
    shown: list[str] = []
    for name in names:
        if shown and len(", ".join([*shown, name])) > budget:
            break
        shown.append(name)
    rest = len(names) - len(shown)
    return ", ".join(shown) + (f" and {rest} more" if rest else "")


def _host_of(url: str) -> str:
    """``host:port`` of a URL, without userinfo, path or query (so without credentials)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return MASK
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


def _env_name(field_name: str, cls: type[Settings] | None = None) -> str:
    alias = (cls or Settings).model_fields[field_name].validation_alias
    return alias if isinstance(alias, str) else field_name.upper()


def _field_by_env() -> dict[str, FieldInfo]:
    return {_env_name(name): info for name, info in Settings.model_fields.items()}


def _loggable(variable: str, value: object) -> object:
    if value is None:
        return None
    if SECRET_VARIABLE.search(variable):
        return MASK
    if isinstance(value, str) and "://" in value:
        # Every URL setting (REDIS_URL, CHATWOOT_URL, any added later), not a list of names.
        return redact_url(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _format(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
