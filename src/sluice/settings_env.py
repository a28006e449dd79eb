"""Reading settings from a given mapping instead of ``os.environ``.

Every settings class of Sluice (core, alerts, handlers) can be loaded from an explicit
mapping, so tests and embedders get exactly what they pass, whatever the shell exports. A
context variable carries the mapping to pydantic-settings' source, so concurrent loads
never see each other's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("sluice_environ", default=None)


class MappingEnvSource(EnvSettingsSource):
    """The environment source over a given mapping."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ  # read by _load_env_vars, which the base __init__ calls
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            (key if self.case_sensitive else key.lower()): value
            for key, value in self._environ.items()
            if not (self.env_ignore_empty and value == "")
        }


@contextmanager
def reading(env: Mapping[str, str] | None) -> Iterator[None]:
    """Settings built inside read ``env`` (None: the process environment)."""
    token = _ENVIRON.set(None if env is None else dict(env))
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def environment() -> Mapping[str, str]:
    """The environment the settings being built read."""
    environ = _ENVIRON.get()
    return os.environ if environ is None else environ


def env_sources(
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
) -> tuple[PydanticBaseSettingsSource, ...]:
    """Init values and the environment (or the mapping being read) only: no hidden .env
    or secrets-dir lookups."""
    environ = _ENVIRON.get()
    if environ is None:
        return (init_settings, env_settings)
    return (init_settings, MappingEnvSource(settings_cls, environ))


class EnvSettings(BaseSettings):
    """Base of Sluice's settings classes: reads the environment (or the mapping being
    read) only, and turns pydantic's errors into the class's readable error."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise type(self).config_error(exc) from None

    @classmethod
    def config_error(cls, exc: ValidationError) -> Exception:
        """The error to raise instead of ``exc`` (subclasses name the variable)."""
        return exc

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_sources(settings_cls, init_settings, env_settings)
