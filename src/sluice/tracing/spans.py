"""The tracer, and the trace context that travels with a message.

A message's *creation context* (the messaging conventions' term: the span that enqueued it)
travels inside its job as the W3C ``traceparent`` string (``00-<trace id>-<span id>-<flags>``,
55 bytes, the job hash's ``tp`` field) and inside a spooled webhook as a ``traceparent``
header. ``tracestate`` and baggage are not carried: nothing in Sluice sets them, and every
byte of a job costs Redis memory for the job's whole retention.

Only :mod:`sluice.tracing.setup` changes :data:`TRACER`; until it does, and after
:func:`~sluice.tracing.setup.shutdown_tracing`, it is the API's no-op tracer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, TraceFlags, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

TRACER: Tracer = trace.NoOpTracer()
#: Whether the installed sampler follows the parent's decision (the SDK's default,
#: ``parentbased_always_on``, and every ``parentbased_*``): then a turn whose messages were
#: all created unsampled would make only non-recording spans, and the worker skips them.
FOLLOWS_PARENT = False
_PROPAGATOR = TraceContextTextMapPropagator()
_HEADER = "traceparent"
_HEX = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def use_tracer(tracer: Tracer | None, *, follows_parent: bool = False) -> None:
    """Make spans with ``tracer`` (None: the no-op tracer again)."""
    global TRACER, FOLLOWS_PARENT
    TRACER = tracer if tracer is not None else trace.NoOpTracer()
    FOLLOWS_PARENT = follows_parent and tracer is not None


def traceparent(span: Span | None = None) -> str:
    """The W3C ``traceparent`` of ``span`` (the current span by default); "" when there is
    no valid one. Written here rather than by the propagator: a job's is always ours, and
    this runs once per message."""
    span_context = (span if span is not None else trace.get_current_span()).get_span_context()
    if not span_context.is_valid:
        return ""
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
        f"-{span_context.trace_flags:02x}"
    )


def span_context_of(value: str | None) -> SpanContext | None:
    """The remote span context a ``traceparent`` names; None when there is none or it is
    malformed (a malformed one starts a new trace instead of failing the message). Parsed
    here rather than by the propagator (a regular expression and a context per call): the
    worker reads one or more per turn. Versions other than 00 are read as 00, as the W3C
    specification asks (the first four fields keep their meaning)."""
    if not value or len(value) < 55:
        return None
    version, trace_hex, span_hex, flags_hex = value[:2], value[3:35], value[36:52], value[53:55]
    if version == "ff" or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    if len(value) > 55 and (version == "00" or value[55] != "-"):
        return None
    try:
        trace_id, span_id, flags = int(trace_hex, 16), int(span_hex, 16), int(flags_hex, 16)
    except ValueError:
        return None
    if not trace_id or not span_id or not _HEX.fullmatch(value[:55]):
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))


def context_of(value: str | None) -> Context | None:
    """The remote parent context a ``traceparent`` names, or None (see
    :func:`span_context_of`)."""
    span_context = span_context_of(value)
    return None if span_context is None else parent_context(span_context)


def parent_context(span_context: SpanContext) -> Context:
    """A context whose current span is ``span_context`` (a remote parent)."""
    return trace.set_span_in_context(NonRecordingSpan(span_context), Context())


def link_to(value: str | None, attributes: Mapping[str, AttributeValue]) -> Link | None:
    """A span link to the context a ``traceparent`` names, or None."""
    span_context = span_context_of(value)
    return None if span_context is None else Link(span_context, dict(attributes))


def from_headers(headers: Mapping[str, str]) -> Context | None:
    """The context an incoming request carries (``traceparent`` and ``tracestate``, read by
    the W3C propagator, as an HTTP server does), or None."""
    if _HEADER not in headers:
        return None
    context = _PROPAGATOR.extract(headers)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def epoch_ns(ms: float) -> int:
    """Epoch milliseconds (a job's hops) as the SDK's epoch nanoseconds."""
    return int(ms * 1_000_000)


def now_ns() -> int:
    return time.time_ns()


def error_type(exc: BaseException) -> str:
    """``error.type`` for an exception: its class's canonical name (general conventions,
    "error.type": the fully qualified class name), e.g. ``httpx.ConnectTimeout``."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
