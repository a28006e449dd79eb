"""When tracing is on (sluice.tracing.setup): only when the standard OTEL_* variables ask for
an exporter, never with OTEL_SDK_DISABLED=true, and with a clear error for what Sluice
cannot honour. Off, nothing is installed."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sluice import ConfigError, tracing
from sluice.tracing import setup, spans


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* variable from the machine, and tracing off again after each test."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    yield
    tracing.shutdown_tracing()


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, ()),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_RESOURCE_ATTRIBUTES": "a=b"}, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",)),
        ({"OTEL_TRACES_EXPORTER": " OTLP , console,otlp"}, ("otlp", "console")),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ()),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ()),
        ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "console"}, ()),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "console"}, ("console",)),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            ("otlp",),
        ),
        (  # the traces-specific protocol wins over the general one
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            ("otlp",),
        ),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ("console",)),
    ],
)
def test_the_standard_variables_decide(env: dict[str, str], wanted: tuple[str, ...]) -> None:
    assert setup.exporters_wanted(env) == wanted


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
    ],
)
def test_what_sluice_cannot_honour_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as raised:
        setup.exporters_wanted(env)
    assert raised.value.variables == (variable,)
    assert variable in str(raised.value)


def test_unset_installs_nothing() -> None:
    assert tracing.configure_tracing("sluice-test") is False
    assert tracing.enabled is False
    assert setup._provider is None
    assert not spans.TRACER.start_span("x").is_recording()


def test_disabled_sdk_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    assert tracing.configure_tracing("sluice-test") is False
    assert tracing.enabled is False


def test_an_endpoint_turns_it_on_with_the_default_service_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    assert tracing.configure_tracing("sluice-test") is True
    assert tracing.enabled is True
    provider = setup._provider
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "sluice-test"
    assert spans.TRACER.start_span("x").is_recording()
    assert tracing.configure_tracing("other") is True  # once per process
    assert setup._provider is provider
    tracing.shutdown_tracing()
    assert tracing.enabled is False and setup._provider is None
    assert not spans.TRACER.start_span("x").is_recording()


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"OTEL_SERVICE_NAME": "chat-queue"}, "chat-queue"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes,team=cx"}, "from-attributes"),
    ],
)
def test_the_environment_names_the_service(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], name: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert tracing.configure_tracing("sluice-test") is True
    assert setup._provider is not None
    assert setup._provider.resource.attributes["service.name"] == name


def test_a_bad_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with pytest.raises(ConfigError):
        tracing.configure_tracing("sluice-test")
    assert tracing.enabled is False
