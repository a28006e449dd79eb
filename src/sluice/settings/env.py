"""The base of every settings class: read the environment (or a given mapping), and turn
pydantic's errors into a :class:`~sluice.errors.ConfigError` that names the variable.

Every settings class of Sluice (core, alerts, handlers) can be loaded from an explicit
mapping, so tests and embedders get exactly what they pass, whatever the shell exports. A
context variable carries the mapping to pydantic-settings' source, so concurrent loads
never see each other's.

A bad value must stop Sluice at startup with a message naming the variable the operator
wrote, never a pydantic traceback naming a Python field: :meth:`EnvSettings.config_error`
is the one translation, and a class only says which variable a field stands for when that
is not simply its alias (:meth:`EnvSettings.variable_of`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from sluice.errors import ConfigError
from sluice.settings.redact import MASK, redact_url

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
    def config_error(cls, exc: ValidationError) -> ConfigError:
        """The error to raise instead of ``exc``: one readable line per variable."""
        messages: list[str] = []
        variables: list[str] = []
        for error in exc.errors(include_url=False):
            if error["type"] == "default_factory_not_called":
                continue  # a default skipped because another variable is invalid: noise
            cause = error.get("ctx", {}).get("error")
            if isinstance(cause, ConfigError):  # a validator already said it well
                messages.append(str(cause))
                variables.extend(cause.variables)
                continue
            variable = cls.variable_of(error["loc"])
            messages.append(_describe(variable, cls.shown(variable, error["input"]), error))
            variables.append(variable)
        return ConfigError("; ".join(messages), tuple(dict.fromkeys(variables)))

    @classmethod
    def shown(cls, variable: str, value: object) -> str:
        """How a refused value appears in the message: never a credential (a variable named
        like one is masked; a URL keeps where it points, not a password in it)."""
        if SECRET_VARIABLE.search(variable):
            return MASK
        if isinstance(value, str) and "://" in value:
            return repr(redact_url(value))
        return repr(value)

    @classmethod
    def variable_of(cls, loc: tuple[int | str, ...]) -> str:
        """The environment variable an error location stands for: the field's alias."""
        if not loc:
            return "configuration"
        first = str(loc[0])
        field = cls.model_fields.get(first)
        if field is not None:
            alias = field.validation_alias
            return alias if isinstance(alias, str) else first.upper()
        return first

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


#: Variables whose values are never repeated in an error message.
SECRET_VARIABLE = re.compile(r"token|secret|key|password|passwd", re.IGNORECASE)


def _describe(variable: str, shown: str, error: ErrorDetails) -> str:
    ctx = error.get("ctx", {})
    kind = error["type"]
    if kind == "greater_than_equal":
        return f"{variable} ({shown}) must be at least {_bound(ctx['ge'])}"
    if kind == "greater_than":
        return f"{variable} ({shown}) must be greater than {_bound(ctx['gt'])}"
    if kind == "less_than_equal":
        return f"{variable} ({shown}) must be at most {_bound(ctx['le'])}"
    if kind == "less_than":
        return f"{variable} ({shown}) must be lower than {_bound(ctx['lt'])}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"{variable} ({shown}) must be a whole number"
    if kind in ("float_parsing", "float_type", "finite_number"):
        return f"{variable} ({shown}) must be a finite number"
    if kind in ("bool_parsing", "bool_type"):
        return f"{variable} ({shown}) must be true or false"
    return f"{variable} ({shown}): {error['msg']}"


def _bound(value: object) -> str:
    """A limit as an operator writes it: 1 rather than 1.0."""
    return f"{value:g}" if isinstance(value, float) else str(value)
