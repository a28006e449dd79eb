"""Which brokers exist: read once at startup from a file or the environment.

A broker is who answers a conversation: an ``ai`` responder (a handler such as
``template`` or ``llm``) or a ``human`` agent (a Chatwoot agent id; its handler hands the
conversation over). Capacity is how many conversations it may hold at once; the assigner
balances on it.

Sources, in this order of precedence: ``SLUICE_BROKERS_FILE`` (YAML or JSON), else
``SLUICE_BROKERS`` (JSON in the variable), else one default ``ai`` broker, so the demo
works with nothing configured. Setting both is refused: silently ignoring one of them is
how an operator ends up debugging the wrong file. Every error names the file or variable
and the offending entry, and is a :class:`~sluice.settings.config.ConfigError`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sluice.settings.config import ConfigError

__all__ = [
    "BROKERS_ENV",
    "BROKERS_FILE_ENV",
    "DEFAULT_BROKER",
    "Broker",
    "BrokerKind",
    "load_brokers",
    "load_brokers_from_env",
]

BROKERS_FILE_ENV = "SLUICE_BROKERS_FILE"
BROKERS_ENV = "SLUICE_BROKERS"

BrokerKind = Literal["ai", "human"]

# Names become Redis hash fields and log/metric labels: keep them plain.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")
# A built-in/entry-point name, or an import path "package.module:Factory".
_HANDLER = re.compile(r"^[A-Za-z_][\w-]*$|^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

#: Default handler and capacity by kind, when an entry leaves them out.
_DEFAULT_HANDLER: Mapping[str, str] = {"ai": "template", "human": "handoff"}
_DEFAULT_CAPACITY: Mapping[str, int] = {"ai": 1000, "human": 5}


class Broker(BaseModel):
    """One broker. Frozen and hashable: it is shared by every turn it answers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: BrokerKind
    handler: str = ""
    agent_id: int | None = Field(None, ge=1)
    capacity: int = Field(0, ge=0)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "name must be 1-64 characters of letters, digits, '_', '.', ':', '@' or '-'"
            )
        return value

    @field_validator("handler")
    @classmethod
    def _check_handler(cls, value: str) -> str:
        value = value.strip()
        if value and not _HANDLER.match(value):
            raise ValueError(
                f"handler {value!r} must be a handler name (template, llm, handoff, or an "
                "entry point) or an import path 'package.module:Factory'"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        """Handler and capacity default by kind; an explicit ``capacity: 0`` stays 0 so the
        check below can reject it instead of silently replacing it."""
        if isinstance(data, dict) and data.get("kind") in _DEFAULT_HANDLER:
            data = dict(data)
            if not data.get("handler"):
                data["handler"] = _DEFAULT_HANDLER[data["kind"]]
            if data.get("capacity") is None:
                data["capacity"] = _DEFAULT_CAPACITY[data["kind"]]
        return data

    @model_validator(mode="after")
    def _check_kind(self) -> Broker:
        if self.capacity < 1:
            raise ValueError(f"capacity must be at least 1 (got {self.capacity})")
        if self.kind == "human" and self.agent_id is None:
            raise ValueError(
                "agent_id (the Chatwoot agent's user id) is required for a human broker"
            )
        return self


#: The broker used when nothing is configured: deterministic answers, room for everyone.
DEFAULT_BROKER = Broker(name="template-bot", kind="ai", handler="template", capacity=1000)


def load_brokers(path: Path | None, env_json: str | None) -> list[Broker]:
    """The configured brokers, from ``path`` (SLUICE_BROKERS_FILE) or ``env_json``
    (SLUICE_BROKERS); ``[DEFAULT_BROKER]`` when neither is given.

    The document is a list of broker entries, or a mapping with a ``brokers`` list.
    """
    has_env = env_json is not None and env_json.strip() != ""
    if path is not None and has_env:
        raise ConfigError(
            f"set either {BROKERS_FILE_ENV} or {BROKERS_ENV}, not both",
            (BROKERS_FILE_ENV, BROKERS_ENV),
        )
    if path is not None:
        source, variable = f"{BROKERS_FILE_ENV} ({path})", BROKERS_FILE_ENV
        document = _read_file(path, source, variable)
    elif has_env:
        assert env_json is not None
        source, variable = BROKERS_ENV, BROKERS_ENV
        try:
            document = json.loads(env_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source} is not valid JSON: {exc}", (variable,)) from None
    else:
        return [DEFAULT_BROKER]
    return _parse(document, source, variable)


def load_brokers_from_env(environ: Mapping[str, str] | None = None) -> list[Broker]:
    """:func:`load_brokers` reading SLUICE_BROKERS_FILE / SLUICE_BROKERS from ``environ``
    (default: the process environment); empty values count as unset."""
    env = os.environ if environ is None else environ
    file_value = env.get(BROKERS_FILE_ENV, "").strip()
    return load_brokers(Path(file_value) if file_value else None, env.get(BROKERS_ENV))


def _read_file(path: Path, source: str, variable: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source} cannot be read: {exc.strerror or exc}", (variable,)) from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source} is not valid YAML/JSON: {exc}", (variable,)) from None


def _parse(document: Any, source: str, variable: str) -> list[Broker]:
    if isinstance(document, dict) and set(document) == {"brokers"}:
        document = document["brokers"]
    if not isinstance(document, list):
        raise ConfigError(
            f"{source} must hold a list of brokers (or a mapping with a 'brokers' list), "
            f"got {type(document).__name__}",
            (variable,),
        )
    if not document:
        raise ConfigError(f"{source} configures no brokers: give at least one", (variable,))
    brokers: list[Broker] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(document, start=1):
        label = _label(index, entry)
        if not isinstance(entry, dict):
            raise ConfigError(
                f"{source}: {label} must be a mapping with name, kind, ..., "
                f"got {type(entry).__name__}",
                (variable,),
            )
        try:
            broker = Broker.model_validate(entry)
        except ValidationError as exc:
            raise ConfigError(f"{source}: {label}: {_describe(exc)}", (variable,)) from None
        if broker.name in seen:
            raise ConfigError(
                f"{source}: {label}: name {broker.name!r} is already used by broker "
                f"#{seen[broker.name]}; names must be unique",
                (variable,),
            )
        seen[broker.name] = index
        brokers.append(broker)
    return brokers


def _label(index: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"broker #{index} ({name!r})" if isinstance(name, str) else f"broker #{index}"


def _describe(exc: ValidationError) -> str:
    """pydantic's errors as one line per field, without its URLs and class names."""
    parts: list[str] = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (expected name, kind, handler, agent_id, capacity)"
        elif error["type"] == "literal_error":
            message = "must be 'ai' or 'human'"
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
