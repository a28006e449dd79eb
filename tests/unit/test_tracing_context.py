"""The W3C traceparent a job carries (sluice.tracing.spans): written and read by Sluice
itself on the hot path, so it must agree with the SDK's own TraceContext propagator, and a
malformed value must start a new trace rather than fail the message."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sluice.tracing import spans

PROPAGATOR = TraceContextTextMapPropagator()
VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@given(
    trace_id=st.integers(1, 2**128 - 1),
    span_id=st.integers(1, 2**64 - 1),
    flags=st.integers(0, 255),
)
def test_written_and_read_as_the_propagator_does(trace_id: int, span_id: int, flags: int) -> None:
    span = NonRecordingSpan(SpanContext(trace_id, span_id, False, TraceFlags(flags)))
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    written = spans.traceparent(span)
    assert written == carrier["traceparent"]
    read = spans.span_context_of(written)
    expected = trace.get_current_span(PROPAGATOR.extract(carrier)).get_span_context()
    assert read is not None and read.is_remote
    assert (read.trace_id, read.span_id, read.trace_flags) == (
        expected.trace_id,
        expected.span_id,
        expected.trace_flags,
    )


def test_the_current_span_by_default_and_nothing_without_one() -> None:
    assert spans.traceparent() == ""  # no span is current
    span = NonRecordingSpan(spans.span_context_of(VALID))  # type: ignore[arg-type]
    with trace.use_span(span):
        assert spans.traceparent() == VALID


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        VALID[:-1],
        VALID.upper(),
        "ff" + VALID[2:],  # version ff is forbidden
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # 00 has 4 fields
        "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
        "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
    ],
)
def test_a_malformed_value_is_no_context(value: str | None) -> None:
    assert spans.span_context_of(value) is None
    assert spans.context_of(value) is None


def test_a_later_version_is_read_as_00() -> None:
    read = spans.span_context_of("01" + VALID[2:] + "-more")
    assert read is not None and read.span_id == 0xB7AD6B7169203331


def test_a_context_of_the_value_parents_a_span() -> None:
    context = spans.context_of(VALID)
    assert context is not None
    parent = trace.get_current_span(context).get_span_context()
    assert parent.trace_id == 0x0AF7651916CD43DD8448EB211C80319C and parent.is_remote
