"""What the tracing tests share: the SDK's in-memory exporter installed through
``sluice.tracing.install``, and ways to read the finished spans as a tree."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sluice import tracing


class WatchedExporter(InMemorySpanExporter):
    """The in-memory exporter, and a way to await spans: spans end in the event loop's
    thread or another (an API server's), and each export wakes the waiters it satisfies."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._waiters: list[tuple[Callable[[], bool], asyncio.AbstractEventLoop, asyncio.Event]]
        self._waiters = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        with self._lock:
            waiters = list(self._waiters)
        for satisfied, loop, event in waiters:
            if satisfied():
                loop.call_soon_threadsafe(event.set)
        return result

    async def wait_for(self, name: str, count: int = 1, timeout_s: float = 10) -> None:
        """Until at least ``count`` spans called ``name`` have ended."""

        def satisfied() -> bool:
            return len(named(self.get_finished_spans(), name)) >= count

        entry = (satisfied, asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.append(entry)
        try:
            if not satisfied():
                async with asyncio.timeout(timeout_s):
                    await entry[2].wait()
        finally:
            with self._lock:
                self._waiters.remove(entry)


@contextlib.contextmanager
def captured_spans() -> Iterator[WatchedExporter]:
    """Tracing on in this process, every span kept in memory as it ends; off afterwards."""
    exporter = WatchedExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()


def named(spans: Iterable[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def one(spans: Iterable[ReadableSpan], name: str) -> ReadableSpan:
    found = named(spans, name)
    assert len(found) == 1, f"expected one {name!r} span, got {[s.name for s in spans]}"
    return found[0]


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    return trace_id(child) == trace_id(parent) and parent_id(child) == span_id(parent)


def linked_ids(span: ReadableSpan) -> list[int]:
    return [link.context.span_id for link in span.links]


def in_trace(spans: Sequence[ReadableSpan], trace: int) -> list[ReadableSpan]:
    return [s for s in spans if trace_id(s) == trace]
