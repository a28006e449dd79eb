"""Broker configuration: file (YAML/JSON) or environment JSON, defaults, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.broker.config import (
    DEFAULT_BROKER,
    Broker,
    load_brokers,
    load_brokers_from_env,
)
from sluice.settings.config import ConfigError


def test_nothing_configured_gives_the_template_bot() -> None:
    assert load_brokers(None, None) == [DEFAULT_BROKER]
    assert load_brokers(None, "  ") == [DEFAULT_BROKER]
    assert DEFAULT_BROKER.name == "template-bot"
    assert DEFAULT_BROKER.kind == "ai"
    assert DEFAULT_BROKER.handler == "template"
    assert DEFAULT_BROKER.capacity == 1000


def test_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "brokers.yaml"
    path.write_text(
        """
brokers:
  - name: bot
    kind: ai
    handler: llm
    capacity: 50
  - name: alice
    kind: human
    agent_id: 23
    capacity: 3
  - name: custom
    kind: ai
    handler: "mypkg.bots:make"
""",
        encoding="utf-8",
    )
    bot, alice, custom = load_brokers(path, None)
    assert bot == Broker(name="bot", kind="ai", handler="llm", capacity=50)
    assert alice.kind == "human" and alice.agent_id == 23 and alice.capacity == 3
    assert alice.handler == "handoff"  # default by kind
    assert custom.handler == "mypkg.bots:make"
    assert custom.capacity == 1000  # default for ai


def test_json_file_as_a_bare_list(tmp_path: Path) -> None:
    path = tmp_path / "brokers.json"
    path.write_text(json.dumps([{"name": "b", "kind": "ai"}]), encoding="utf-8")
    assert [b.name for b in load_brokers(path, None)] == ["b"]


def test_env_json() -> None:
    env = json.dumps([{"name": "h1", "kind": "human", "agent_id": 7, "capacity": 2}])
    (broker,) = load_brokers(None, env)
    assert broker.agent_id == 7 and broker.capacity == 2


def test_from_env_mapping(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("- {name: x, kind: ai}\n", encoding="utf-8")
    assert load_brokers_from_env({"SLUICE_BROKERS_FILE": str(path)})[0].name == "x"
    assert load_brokers_from_env({"SLUICE_BROKERS": '[{"name":"y","kind":"ai"}]'})[0].name == "y"
    assert load_brokers_from_env({}) == [DEFAULT_BROKER]
    assert load_brokers_from_env({"SLUICE_BROKERS_FILE": ""}) == [DEFAULT_BROKER]


def _error(path: Path | None, env: str | None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_brokers(path, env)
    return info.value


def test_human_needs_an_agent_id() -> None:
    err = _error(None, '[{"name":"ok","kind":"ai"},{"name":"bob","kind":"human"}]')
    assert "SLUICE_BROKERS" in str(err)
    assert "broker #2 ('bob')" in str(err)
    assert "agent_id" in str(err)
    assert err.variables == ("SLUICE_BROKERS",)


def test_capacity_must_be_positive(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("- {name: z, kind: ai, capacity: 0}\n", encoding="utf-8")
    err = _error(path, None)
    assert str(path) in str(err) and "SLUICE_BROKERS_FILE" in str(err)
    assert "capacity" in str(err) and "'z'" in str(err)


def test_unknown_kind_and_unknown_field() -> None:
    assert "'ai' or 'human'" in str(_error(None, '[{"name":"r","kind":"robot"}]'))
    assert "unknown field" in str(_error(None, '[{"name":"r","kind":"ai","capcity":3}]'))


def test_names_are_unique_and_plain() -> None:
    err = _error(None, '[{"name":"a","kind":"ai"},{"name":"a","kind":"ai"}]')
    assert "broker #2 ('a')" in str(err) and "unique" in str(err)
    assert "name" in str(_error(None, '[{"name":"has space","kind":"ai"}]'))


def test_bad_handler_spec() -> None:
    assert "handler" in str(_error(None, '[{"name":"a","kind":"ai","handler":"no good"}]'))


def test_bad_documents(tmp_path: Path) -> None:
    assert "not valid JSON" in str(_error(None, "[{"))
    assert "no brokers" in str(_error(None, "[]"))
    assert "list of brokers" in str(_error(None, '{"name":"a"}'))
    assert "broker #1 must be a mapping" in str(_error(None, '["a"]'))
    missing = tmp_path / "missing.yaml"
    err = _error(missing, None)
    assert str(missing) in str(err) and "cannot be read" in str(err)
    broken = tmp_path / "broken.yaml"
    broken.write_text("brokers: [\n", encoding="utf-8")
    assert "not valid YAML" in str(_error(broken, None))


def test_both_sources_are_refused(tmp_path: Path) -> None:
    err = _error(tmp_path / "b.yaml", "[]")
    assert set(err.variables) == {"SLUICE_BROKERS_FILE", "SLUICE_BROKERS"}


def test_broker_is_frozen_and_hashable() -> None:
    broker = Broker(name="a", kind="ai")
    assert hash(broker) == hash(Broker(name="a", kind="ai"))
    with pytest.raises(ValueError):
        broker.capacity = 3  # type: ignore[misc]
