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

import time
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

TRACER: Tracer = trace.NoOpTracer()
_PROPAGATOR = TraceContextTextMapPropagator()
_HEADER = "traceparent"


def use_tracer(tracer: Tracer | None) -> None:
    """Make spans with ``tracer`` (None: the no-op tracer again)."""
    global TRACER
    TRACER = tracer if tracer is not None else trace.NoOpTracer()


def traceparent(span: Span | None = None) -> str:
    """The W3C ``traceparent`` of ``span`` (the current span by default); "" when there is
    no valid one."""
    carrier: dict[str, str] = {}
    context = trace.set_span_in_context(span) if span is not None else None
    _PROPAGATOR.inject(carrier, context=context)
    return carrier.get(_HEADER, "")


def context_of(value: str | None) -> Context | None:
    """The remote parent context a ``traceparent`` names; None when there is none or it is
    malformed (a malformed one starts a new trace instead of failing the message)."""
    if not value:
        return None
    context = _PROPAGATOR.extract({_HEADER: value})
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def span_context_of(value: str | None) -> SpanContext | None:
    """The span context a ``traceparent`` names (for a link), or None."""
    context = context_of(value)
    return None if context is None else trace.get_current_span(context).get_span_context()


def link_to(value: str | None, attributes: Mapping[str, AttributeValue]) -> Link | None:
    """A span link to the context a ``traceparent`` names, or None."""
    span_context = span_context_of(value)
    return None if span_context is None else Link(span_context, dict(attributes))


def from_headers(headers: Mapping[str, str]) -> Context | None:
    """The context an incoming request carries in its ``traceparent`` header, if any."""
    return context_of(headers.get(_HEADER))


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
