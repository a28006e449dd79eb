"""Handler registry and the settings the built-in handlers read.

A broker names its handler by one string:

* a built-in: ``template``, ``llm``, ``handoff``;
* an entry point in the group ``sluice.handlers`` (a plug-in package declares
  ``[project.entry-points."sluice.handlers"] mybot = "mypkg.bot:make_handler"``);
* an import path ``package.module:Factory``.

Entry points and import paths name a *factory*: a callable taking :class:`HandlerSettings`
and returning a :class:`~sluice.broker.base.ReplyHandler` (a class whose ``__init__`` takes the
settings works). Built-ins cannot be shadowed by plug-ins, so ``template`` always means the
same thing. Every failure is a :class:`~sluice.settings.config.ConfigError` naming the handler (and
the variable, for settings), raised at startup rather than on the first message.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from sluice.broker.base import ReplyHandler
from sluice.broker.handlers.handoff import HandoffHandler
from sluice.broker.handlers.llm import LlmHandler
from sluice.broker.handlers.template import (
    DEFAULT_HANDOFF_ANSWER,
    TemplateHandler,
    TemplateRulesError,
)
from sluice.errors import ConfigError
from sluice.settings.env import EnvSettings, reading
from sluice.settings.redact import redact_url

__all__ = [
    "BUILTIN_HANDLERS",
    "ENTRY_POINT_GROUP",
    "HandlerFactory",
    "HandlerSettings",
    "get_handler",
    "load_handler_settings",
]

ENTRY_POINT_GROUP = "sluice.handlers"

HandlerFactory = Callable[["HandlerSettings"], ReplyHandler]


class HandlerSettings(EnvSettings):
    """Settings of the built-in handlers, named by their environment variables.

    Only read what a handler needs: ``LLM_*`` matter only to brokers using ``llm``, so a
    demo without an LLM starts fine, while ``get_handler("llm", ...)`` names the missing
    variable.
    """

    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True
    )

    llm_base_url: str | None = Field(None, validation_alias="LLM_BASE_URL")
    llm_model: str | None = Field(None, validation_alias="LLM_MODEL")
    llm_api_key: SecretStr | None = Field(None, validation_alias="LLM_API_KEY")
    llm_system_prompt_file: Path | None = Field(None, validation_alias="LLM_SYSTEM_PROMPT_FILE")
    llm_max_timeout_s: float = Field(
        20.0, gt=0, allow_inf_nan=False, validation_alias="LLM_MAX_TIMEOUT_S"
    )
    llm_min_budget_ms: float = Field(
        1500.0, ge=0, allow_inf_nan=False, validation_alias="LLM_MIN_BUDGET_MS"
    )
    template_rules_file: Path | None = Field(None, validation_alias="SLUICE_TEMPLATE_RULES_FILE")
    template_latency_ms: float = Field(
        0.0, ge=0, allow_inf_nan=False, validation_alias="SLUICE_TEMPLATE_LATENCY_MS"
    )
    handoff_message: str = Field(DEFAULT_HANDOFF_ANSWER, validation_alias="SLUICE_HANDOFF_MESSAGE")

    @field_validator("llm_base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ConfigError(
                f"LLM_BASE_URL ({redact_url(value)!r}) must be an http:// or https:// URL, such as "
                "https://api.openai.com/v1",
                ("LLM_BASE_URL",),
            )
        return value


def load_handler_settings(env: Mapping[str, str] | None = None) -> HandlerSettings:
    """Read the handler settings from ``env`` (None: the process environment).

    A mapping is read *instead of* os.environ, so tests get exactly what they pass.
    """
    with reading(env):
        return HandlerSettings()


def _template(settings: HandlerSettings) -> ReplyHandler:
    try:
        return TemplateHandler(
            settings.template_rules_file, latency_ms=settings.template_latency_ms
        )
    except TemplateRulesError as exc:
        raise ConfigError(
            f"SLUICE_TEMPLATE_RULES_FILE: {exc}", ("SLUICE_TEMPLATE_RULES_FILE",)
        ) from None


def _llm(settings: HandlerSettings) -> ReplyHandler:
    missing = [
        name
        for name, value in (
            ("LLM_BASE_URL", settings.llm_base_url),
            ("LLM_MODEL", settings.llm_model),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"the llm handler needs {' and '.join(missing)} (an OpenAI-compatible endpoint "
            "such as https://api.openai.com/v1, and a model name)",
            tuple(missing),
        )
    assert settings.llm_base_url is not None and settings.llm_model is not None
    try:
        return LlmHandler(
            settings.llm_base_url,
            settings.llm_model,
            settings.llm_api_key,
            settings.llm_system_prompt_file,
            max_timeout_s=settings.llm_max_timeout_s,
            min_budget_ms=settings.llm_min_budget_ms,
            handoff_answer=settings.handoff_message or None,
        )
    except ValueError as exc:
        raise ConfigError(f"LLM_SYSTEM_PROMPT_FILE: {exc}", ("LLM_SYSTEM_PROMPT_FILE",)) from None


def _handoff(settings: HandlerSettings) -> ReplyHandler:
    return HandoffHandler(settings.handoff_message)


BUILTIN_HANDLERS: Mapping[str, HandlerFactory] = {
    "template": _template,
    "llm": _llm,
    "handoff": _handoff,
}


def get_handler(name_or_path: str, settings: HandlerSettings) -> ReplyHandler:
    """Build the handler named ``name_or_path`` (built-in, entry point or import path)."""
    spec = name_or_path.strip()
    if not spec:
        raise ConfigError("a handler name must not be empty")
    builtin = BUILTIN_HANDLERS.get(spec)
    if builtin is not None:
        return builtin(settings)
    target = _import(spec) if ":" in spec else _entry_point(spec)
    return _build(spec, target, settings)


def _import(spec: str) -> Any:
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise ConfigError(f"handler {spec!r}: an import path must look like 'pkg.module:Factory'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"handler {spec!r}: cannot import {module_name!r}: {exc}") from None
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                f"handler {spec!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from None
    return target


def _entry_point(name: str) -> Any:
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        known = sorted(
            {*BUILTIN_HANDLERS, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))}
        )
        raise ConfigError(
            f"unknown handler {name!r}: known handlers are {', '.join(known)}; or give an "
            "import path 'pkg.module:Factory'"
        )
    entry = next(iter(found))
    try:
        return entry.load()
    except Exception as exc:  # a broken plug-in must name itself, whatever it raised
        raise ConfigError(
            f"handler {name!r}: entry point {entry.value!r} failed to load: {exc}"
        ) from None


def _build(spec: str, target: Any, settings: HandlerSettings) -> ReplyHandler:
    """Call the factory with the settings; accept a ready handler object as well."""
    if not isinstance(target, type) and _is_handler(target):
        return target  # type: ignore[no-any-return]
    if not callable(target):
        raise ConfigError(f"handler {spec!r} is neither a handler nor a factory callable")
    try:
        handler = target(settings)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"handler {spec!r}: its factory failed: {exc}") from None
    if not _is_handler(handler):
        raise ConfigError(
            f"handler {spec!r}: the factory returned {type(handler).__name__}, which has no "
            "'name' and 'async answer(turn)'"
        )
    return handler  # type: ignore[no-any-return]


def _is_handler(obj: Any) -> bool:
    return isinstance(getattr(obj, "name", None), str) and callable(getattr(obj, "answer", None))
