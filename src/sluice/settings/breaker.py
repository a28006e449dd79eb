"""Settings of the per-broker circuit breaker (:mod:`sluice.broker.breaker`).

Off by default: with ``SLUICE_BREAKER_ENABLED`` unset or false every turn goes to its
broker's handler exactly as before (retries with backoff, a handoff on the last attempt or
with the SLA budget nearly spent). Switched on, an AI broker whose calls keep failing (or
keep running over the latency budget) stops being called for a cool-off, and its turns go
to the fallback: the ``template`` handler (an answer at once) or ``handoff`` (a human).

Every bad value stops the process at startup with the variable's name, like every other
setting (:class:`~sluice.settings.env.EnvSettings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from sluice.errors import ConfigError
from sluice.settings.env import EnvSettings, reading

__all__ = ["BreakerFallback", "BreakerSettings", "load_breaker_settings"]

BreakerFallback = Literal["template", "handoff"]


class BreakerSettings(EnvSettings):
    """The breaker's thresholds, named by their environment variables.

    Ratios are 0..1; ``window_s`` is the rolling window the ratios are taken over (a
    monotonic clock in each worker process), ``min_calls`` the calls that window must hold
    before a ratio may open the breaker (two failures out of two is not a trend).
    """

    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True
    )

    enabled: bool = Field(False, validation_alias="SLUICE_BREAKER_ENABLED")
    fallback: BreakerFallback = Field("template", validation_alias="SLUICE_BREAKER_FALLBACK")
    window_s: float = Field(
        10.0, gt=0, le=3600, allow_inf_nan=False, validation_alias="SLUICE_BREAKER_WINDOW_S"
    )
    min_calls: int = Field(10, ge=1, le=10_000, validation_alias="SLUICE_BREAKER_MIN_CALLS")
    failure_ratio: float = Field(
        0.5, gt=0, le=1, allow_inf_nan=False, validation_alias="SLUICE_BREAKER_FAILURE_RATIO"
    )
    slow_ms: float = Field(
        5_000, ge=0, allow_inf_nan=False, validation_alias="SLUICE_BREAKER_SLOW_MS"
    )
    slow_ratio: float = Field(
        0.5, gt=0, le=1, allow_inf_nan=False, validation_alias="SLUICE_BREAKER_SLOW_RATIO"
    )
    cooloff_s: float = Field(
        30.0, gt=0, le=86_400, allow_inf_nan=False, validation_alias="SLUICE_BREAKER_COOLOFF_S"
    )
    probes: int = Field(2, ge=1, le=100, validation_alias="SLUICE_BREAKER_PROBES")
    probe_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        validation_alias="SLUICE_BREAKER_PROBE_TIMEOUT_S",
    )

    @model_validator(mode="before")
    @classmethod
    def _lowercase_fallback(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in ("fallback", "SLUICE_BREAKER_FALLBACK"):
                value = data.get(key)
                if isinstance(value, str):
                    data = {**data, key: value.strip().lower()}
                    if data[key] not in ("template", "handoff"):
                        raise ConfigError(
                            f"SLUICE_BREAKER_FALLBACK ({value!r}) must be 'template' (answer "
                            "with the template rules) or 'handoff' (a human takes over)",
                            ("SLUICE_BREAKER_FALLBACK",),
                        )
        return data

    def describe(self) -> str:
        """One line for the startup log."""
        if not self.enabled:
            return "circuit breaker off"
        slow = f", slow ratio {self.slow_ratio:g} (calls over {self.slow_ms:g} ms)"
        return (
            f"circuit breaker on: failure ratio {self.failure_ratio:g}"
            f"{slow if self.slow_ms else ''} over {self.window_s:g} s (at least "
            f"{self.min_calls} calls), cool-off {self.cooloff_s:g} s, {self.probes} probe(s), "
            f"fallback {self.fallback}"
        )


def load_breaker_settings(env: Mapping[str, str] | None = None) -> BreakerSettings:
    """Read the breaker settings from ``env`` (None: the process environment)."""
    with reading(env):
        return BreakerSettings()
