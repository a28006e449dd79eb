"""Tracing's configuration: the standard ``OTEL_*`` variables decide whether spans are made,
and the OpenTelemetry SDK reads the rest of them itself.

Tracing is on when ``OTEL_SDK_DISABLED`` is not ``true`` and either ``OTEL_TRACES_EXPORTER``
names an exporter (``otlp``, ``console``, or both, comma-separated) or an OTLP endpoint is
set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``).
``OTEL_TRACES_EXPORTER=none`` turns it off. The specification's default exporter is ``otlp``
even with nothing set; Sluice deliberately waits to be asked, so that an unconfigured
deployment pays nothing and sends nothing to a ``localhost:4318`` that is not there.

What the SDK reads on its own: ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (the
resource; Sluice's default service name applies only when neither names one),
``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_BSP_*`` (the batch processor),
``OTEL_EXPORTER_OTLP_*`` (endpoint, headers, timeout, compression, certificates). The
exporter is OTLP over HTTP with protobuf; a protocol set to anything else (``grpc``,
``http/json``) is a configuration error rather than spans silently sent the wrong way.

The provider is Sluice's own, not the OpenTelemetry API's global one. FastAPI's built-in
telemetry (``fastapi.telemetry`` in the pinned FastAPI) starts tracing every route, with
spans for dependencies and serialization, and recording validation failures and unhandled
exceptions with their messages, as soon as a global provider exists: the dashboard's polling
and the probes would flood the traces, and a refused webhook's content could be recorded.
So only the webhook intake is traced on the HTTP side; an operator who wants FastAPI's own
telemetry too sets it up the FastAPI way (``FASTAPI_OTEL_AUTO_CONFIGURE=true``), and its
spans and Sluice's share the context.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import sluice.tracing as _flag
from sluice.errors import ConfigError
from sluice.tracing import spans

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("sluice.tracing")

EXPORTERS = ("otlp", "console")
PROTOCOL = "http/protobuf"
INSTRUMENTATION = "sluice"

_provider: TracerProvider | None = None


def exporters_wanted(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The exporters the environment asks for (none: tracing stays off). Raises
    :class:`~sluice.errors.ConfigError` naming the variable for a value Sluice cannot
    honour."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    named = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in named if n]
    if "none" in names:
        return ()
    if not names and (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        names = ["otlp"]
    unknown = sorted(set(names) - set(EXPORTERS))
    if unknown:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={env.get('OTEL_TRACES_EXPORTER')!r}: Sluice exports traces "
            f"with {', '.join(EXPORTERS)} or none, not {', '.join(unknown)}",
            ("OTEL_TRACES_EXPORTER",),
        )
    if "otlp" in names:
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = env.get(variable, "").strip().lower()
            if protocol and protocol != PROTOCOL:
                raise ConfigError(
                    f"{variable}={protocol!r}: Sluice ships the OTLP exporter over HTTP with "
                    f"protobuf only; set it to {PROTOCOL} (a collector's port 4318) or unset it",
                    (variable,),
                )
            if protocol:
                break  # the traces-specific variable wins over the general one
    return tuple(dict.fromkeys(names))


def configure_tracing(default_service_name: str) -> bool:
    """Install the SDK's tracer provider with a batch processor per exporter when the
    environment asks for tracing (see the module docstring); returns whether tracing is on.
    Once per process: a second call changes nothing. :func:`shutdown_tracing` flushes it."""
    if _flag.enabled:
        return True
    exporters = exporters_wanted()
    if not exporters:
        return False
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    provider = TracerProvider(resource=_resource(default_service_name))
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    service = provider.resource.attributes.get("service.name")
    log.info("tracing on: service %s, exporting with %s", service, ", ".join(exporters))
    return True


def install(provider: TracerProvider) -> None:
    """Make spans with ``provider`` from now on. :func:`configure_tracing` calls it; tests
    call it with a provider of their own (an in-memory exporter behind a simple processor)
    and end with :func:`shutdown_tracing`."""
    global _provider
    from importlib.metadata import PackageNotFoundError, version

    try:
        sluice_version = version("sluice")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        sluice_version = None
    from opentelemetry.sdk.trace.sampling import ParentBased

    _provider = provider
    spans.use_tracer(
        provider.get_tracer(INSTRUMENTATION, sluice_version),
        follows_parent=isinstance(provider.sampler, ParentBased),
    )
    _flag.enabled = True


def shutdown_tracing() -> None:
    """Stop making spans, then flush and shut down the provider (its batch processors send
    what they hold). Safe to call when tracing is off."""
    global _provider
    provider, _provider = _provider, None
    _flag.enabled = False
    spans.use_tracer(None)
    if provider is not None:
        provider.shutdown()


def _resource(default_service_name: str) -> Resource:
    """The SDK's resource from the environment (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES),
    with ``default_service_name`` when neither names the service (the SDK would say
    ``unknown_service``)."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create()
    name = str(resource.attributes.get(SERVICE_NAME, ""))
    if not name or name.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service_name}))
    return resource
