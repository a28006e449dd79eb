"""Alert settings: every threshold of the origin note, each overridable by one variable.

Every field is read from ``SLUICE_ALERT_<FIELD NAME IN CAPITALS>``; the defaults are the
origin note's thresholds (the "Alert Thresholds" of the system Sluice replaces) so that
a fresh install warns at the same points the system it replaces did. One exception: the
oldest-waiting threshold defaults to ``SLA_CRITICAL_THRESHOLD`` (the age at which a message
has breached its SLA anyway), and ``SLUICE_ALERT_OLDEST_WAITING_CRITICAL_MS`` overrides it.

As in :mod:`sluice.settings.config`, a bad value stops the process with a :class:`ConfigError` that
names the environment variable, never a pydantic traceback naming a Python field. The Slack
webhook URL is a credential (anyone holding it can post to the channel): it is a
``SecretStr`` and :meth:`AlertSettings.describe` shows it masked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    SettingsConfigDict,
)

from sluice.errors import ConfigError
from sluice.settings.env import EnvSettings, environment, reading

__all__ = [
    "ENV_PREFIX",
    "AlertSettings",
    "env_name",
    "load_alert_settings",
    "mask_url",
]

ENV_PREFIX = "SLUICE_ALERT_"
_OLDEST_VARIABLE = "SLUICE_ALERT_OLDEST_WAITING_CRITICAL_MS"
_SLA_CRITICAL_VARIABLE = "SLA_CRITICAL_THRESHOLD"
_MASK = "***"
_URL_SCHEMES = ("http", "https")

# (warning, critical) fields where the warning threshold must be the lower one.
_ORDERED = (
    ("queue_wait_warning_ms", "queue_wait_critical_ms"),
    ("utilization_warning", "utilization_critical"),
    ("failure_rate_warning", "failure_rate_critical"),
    ("oldest_waiting_warning_ms", "oldest_waiting_critical_ms"),
)


class AlertSettings(EnvSettings):
    """Thresholds and timings of the alert rules, their lifecycle and their channels.

    Thresholds in milliseconds end in ``_ms``; ratios are 0..1 (0.8 = 80 %); durations in
    seconds end in ``_s``. An optional threshold left unset (``None``) disables that
    severity of its rule.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        env_ignore_empty=True,  # `VAR=` in a .env file means "not set", not "invalid"
        extra="ignore",
        frozen=True,
        populate_by_name=True,  # AlertSettings(oldest_waiting_critical_ms=...) in code/tests
    )

    # Queue wait p95 over 1 min: the origin's "Queue wait time >5 s / >10 s".
    queue_wait_warning_ms: float = Field(5_000, gt=0, allow_inf_nan=False)
    queue_wait_critical_ms: float = Field(10_000, gt=0, allow_inf_nan=False)
    # Worker utilization over 1 min: the origin's ">80 % / >90 %".
    utilization_warning: float = Field(0.80, gt=0, le=1, allow_inf_nan=False)
    utilization_critical: float = Field(0.90, gt=0, le=1, allow_inf_nan=False)
    # Failed attempts over finished attempts (5 min), evaluated once enough attempts finished.
    failure_rate_warning: float = Field(0.10, gt=0, le=1, allow_inf_nan=False)
    failure_rate_critical: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    failure_rate_min_samples: int = Field(20, ge=0)
    # Share of messages within SLA_WARNING_THRESHOLD (5 min); also the burn rate's objective.
    sla_objective: float = Field(0.95, gt=0, lt=1, allow_inf_nan=False)
    sla_compliance_critical: float | None = Field(None, gt=0, lt=1, allow_inf_nan=False)
    sla_min_samples: int = Field(20, ge=0)
    # Oldest waiting message: the symptom of a stuck queue.
    oldest_waiting_warning_ms: float | None = Field(None, gt=0, allow_inf_nan=False)
    oldest_waiting_critical_ms: float = Field(
        30_000,
        gt=0,
        allow_inf_nan=False,
        validation_alias=AliasChoices(_OLDEST_VARIABLE, _SLA_CRITICAL_VARIABLE),
    )
    # Multi-window burn rates of the SLA error budget (Google SRE workbook, chapter 5).
    burn_rate_fast: float = Field(14.4, gt=0, allow_inf_nan=False)  # 1 h and 5 min: critical
    burn_rate_slow: float = Field(6.0, gt=0, allow_inf_nan=False)  # 6 h and 30 min: warning

    # Lifecycle.
    for_s: float = Field(30.0, ge=0, allow_inf_nan=False)
    hysteresis: float = Field(0.1, ge=0, lt=1, allow_inf_nan=False)
    repeat_interval_s: float = Field(4 * 3600.0, gt=0, allow_inf_nan=False)
    cooldown_s: float = Field(300.0, ge=0, allow_inf_nan=False)

    # Channels.
    webhook_url: str | None = None
    slack_webhook_url: SecretStr | None = None
    # Alertmanager's base URL (its API v2 is under /api/v2); several separated by commas
    # for every member of a cluster. Firing alerts are re-sent every ALERTMANAGER_RESEND_S
    # (Prometheus's --rules.alert.resend-delay default); GENERATOR_URL is the link
    # Alertmanager shows as the alerts' source (Sluice's dashboard, say).
    alertmanager_url: str | None = None
    alertmanager_resend_s: float = Field(60.0, gt=0, allow_inf_nan=False)
    generator_url: str | None = None
    channel_timeout_s: float = Field(5.0, gt=0, allow_inf_nan=False)
    channel_max_attempts: int = Field(5, ge=1)
    channel_backoff_s: float = Field(1.0, gt=0, allow_inf_nan=False)

    # The evaluator.
    evaluation_interval_s: float = Field(5.0, gt=0, allow_inf_nan=False)
    lease_ttl_s: float = Field(15.0, gt=0, allow_inf_nan=False)

    @classmethod
    def variable_of(cls, loc: tuple[int | str, ...]) -> str:
        return _variable_of(loc)

    @classmethod
    def shown(cls, variable: str, value: object) -> str:
        # Alert destinations are credentials whole (a Slack webhook's path is its secret).
        return _MASK if "URL" in variable else super().shown(variable, value)

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_http_url(env_name("webhook_url"), value)
        return value

    @field_validator("alertmanager_url")
    @classmethod
    def _check_alertmanager_url(cls, value: str | None) -> str | None:
        if value is not None:
            urls = _split_urls(value)
            if not urls:
                raise ConfigError(
                    f"{env_name('alertmanager_url')} names no URL", (env_name("alertmanager_url"),)
                )
            for url in urls:
                _check_http_url(env_name("alertmanager_url"), url)
        return value

    @field_validator("generator_url")
    @classmethod
    def _check_generator_url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_http_url(env_name("generator_url"), value)
        return value

    @field_validator("slack_webhook_url")
    @classmethod
    def _check_slack_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_http_url(env_name("slack_webhook_url"), value.get_secret_value(), True)
        return value

    @model_validator(mode="after")
    def _check_relations(self) -> AlertSettings:
        for low_name, high_name in _ORDERED:
            low, high = getattr(self, low_name), getattr(self, high_name)
            if low is not None and high is not None and low >= high:
                raise _relation_error(low_name, low, "lower than", high_name, high)
        critical = self.sla_compliance_critical
        if critical is not None and critical >= self.sla_objective:
            raise _relation_error(
                "sla_compliance_critical",
                critical,
                "lower than",
                "sla_objective",
                self.sla_objective,
            )
        if self.evaluation_interval_s >= self.lease_ttl_s:
            # The leader renews its lease once per evaluation: a TTL shorter than the interval
            # would hand leadership back and forth on every iteration.
            raise _relation_error(
                "evaluation_interval_s",
                self.evaluation_interval_s,
                "lower than",
                "lease_ttl_s",
                self.lease_ttl_s,
            )
        return self

    @property
    def lease_ttl_ms(self) -> int:
        return max(1, math.ceil(self.lease_ttl_s * 1000))

    def alertmanager_urls(self) -> list[str]:
        """Every configured Alertmanager base URL, in order (none when unset)."""
        return [] if self.alertmanager_url is None else _split_urls(self.alertmanager_url)

    def slack_url(self) -> str | None:
        """The Slack webhook URL in clear, for the channel only: never log the result."""
        return None if self.slack_webhook_url is None else self.slack_webhook_url.get_secret_value()

    def describe(self) -> dict[str, object]:
        """Effective values keyed by variable, safe to log: webhook URLs masked."""
        summary: dict[str, object] = {}
        for name in type(self).model_fields:
            value: object = getattr(self, name)
            if name == "slack_webhook_url":
                slack = self.slack_url()
                value = None if slack is None else mask_url(slack, hide_path=True)
            elif name in ("webhook_url", "generator_url") and isinstance(value, str):
                value = mask_url(value)
            elif name == "alertmanager_url" and isinstance(value, str):
                value = ",".join(mask_url(url) for url in _split_urls(value))
            summary[env_name(name)] = value
        return summary


def load_alert_settings(env: Mapping[str, str] | None = None) -> AlertSettings:
    """Read the alert settings from ``env`` (None: the process environment).

    A mapping is read *instead of* os.environ, so tests get exactly what they pass.
    """
    with reading(env):
        return AlertSettings()


def env_name(field_name: str) -> str:
    """The environment variable that sets ``field_name``."""
    if field_name == "oldest_waiting_critical_ms":
        return _OLDEST_VARIABLE
    return ENV_PREFIX + field_name.upper()


def mask_url(url: str, *, hide_path: bool = False) -> str:
    """``url`` safe to log: userinfo and query values masked, the path too if ``hide_path``.

    Webhook URLs are often credentials in themselves: a Slack incoming webhook's path *is*
    the token (``/services/T…/B…/secret``), other receivers take ``user:password@`` or a
    ``?token=``. With ``hide_path`` only the first path segment is kept, which is enough to
    tell receivers apart in a log line.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
        has_userinfo = "@" in parts.netloc
    except ValueError:
        return _MASK
    netloc = ("[" + host + "]" if ":" in host else host) + (f":{port}" if port else "")
    if has_userinfo:
        netloc = f"{_MASK}@{netloc}"
    path = parts.path
    if hide_path and path.strip("/"):
        first = path.lstrip("/").split("/", 1)[0]
        path = f"/{first}/{_MASK}"
    query = ""
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = "?" + urlencode([(key, _MASK) for key, _ in pairs], safe="*")
    return f"{parts.scheme}://{netloc}{path}{query}"


def _split_urls(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _check_http_url(variable: str, value: str, secret: bool = False) -> None:
    try:
        parts = urlsplit(value)
        ok = parts.scheme in _URL_SCHEMES and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        shown = _MASK if secret else mask_url(value)
        raise ConfigError(
            f"{variable} ({shown}) must be an http:// or https:// URL with a host", (variable,)
        )


def _relation_error(
    low_name: str, low: float, relation: str, high_name: str, high: float
) -> ConfigError:
    low_var, high_var = env_name(low_name), env_name(high_name)
    return ConfigError(
        f"{low_var} ({low:g}) must be {relation} {high_var} ({high:g})", (low_var, high_var)
    )


def _variable_of(loc: tuple[int | str, ...]) -> str:
    """The variable an error location refers to, as the operator wrote it."""
    if not loc:
        return "alert configuration"
    first = str(loc[0])
    if first == _OLDEST_VARIABLE or first == "oldest_waiting_critical_ms":
        # The value may have come from the fallback SLA_CRITICAL_THRESHOLD.
        source = environment()
        if not source.get(_OLDEST_VARIABLE) and source.get(_SLA_CRITICAL_VARIABLE):
            return _SLA_CRITICAL_VARIABLE
        return _OLDEST_VARIABLE
    if first in AlertSettings.model_fields:
        return env_name(first)
    return first
