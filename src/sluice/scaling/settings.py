"""Predictive scaling's settings, read from ``SLUICE_SCALING_<FIELD IN CAPITALS>``.

Off by default (``SLUICE_SCALING_ENABLED=false``): then nothing is forecast, no
recommendation is published and ``sluice worker --processes auto`` refuses to start, so a
deployment behaves exactly as before (static worker count) until an operator turns it on.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from sluice.errors import ConfigError
from sluice.settings.env import EnvSettings, reading

ENV_PREFIX = "SLUICE_SCALING_"


class ScalingSettings(EnvSettings):
    """Bounds and targets of the recommendation (docs/scaling.md)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    enabled: bool = False
    min_workers: int = Field(1, ge=1, le=10_000)
    max_workers: int = Field(10, ge=1, le=10_000)
    # The utilization the recommendation aims at: 0.7 leaves 30 % for what the band misses.
    target_utilization: float = Field(0.7, gt=0, le=1, allow_inf_nan=False)
    # The forecast's upper band: the quantile an ordinary minute exceeds 1 time in 10.
    band: float = Field(0.9, ge=0.5, lt=1, allow_inf_nan=False)
    # How many forecast minutes the recommendation covers (the largest upper band among
    # them): a worker's start-up time plus one, so workers are up before the load is
    # (3: a Kubernetes pod in about 2 minutes).
    lookahead_minutes: int = Field(3, ge=1, le=15)
    # Waiting messages count as arrivals to serve within this many seconds (0: the
    # forecast alone), so a backlog left by a burst is drained, not just kept level.
    drain_s: float = Field(60.0, ge=0, allow_inf_nan=False)
    # Mean service time when no message finished in the last hour (a fresh install).
    default_service_time_ms: float = Field(1000.0, gt=0, allow_inf_nan=False)
    # How often `sluice worker --processes auto` reads the recommendation.
    poll_s: float = Field(15.0, gt=0, le=3600, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check_bounds(self) -> ScalingSettings:
        if self.min_workers > self.max_workers:
            raise ConfigError(
                f"SLUICE_SCALING_MIN_WORKERS ({self.min_workers}) must not exceed "
                f"SLUICE_SCALING_MAX_WORKERS ({self.max_workers})",
                ("SLUICE_SCALING_MIN_WORKERS", "SLUICE_SCALING_MAX_WORKERS"),
            )
        return self

    @classmethod
    def variable_of(cls, loc: tuple[int | str, ...]) -> str:
        return ENV_PREFIX + str(loc[0]).upper() if loc else "configuration"


def load_scaling_settings(env: Mapping[str, str] | None = None) -> ScalingSettings:
    """Read the scaling settings from ``env`` (None: the process environment)."""
    with reading(env):
        return ScalingSettings()
