"""What the tracing tests share: the SDK's in-memory exporter installed through
``sluice.tracing.install``, ways to read the finished spans as a tree, and an OTLP/HTTP
receiver for spans exported by other processes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

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
def captured_spans(sampler: Sampler | None = None) -> Iterator[WatchedExporter]:
    """Tracing on in this process, every span kept in memory as it ends; off afterwards."""
    exporter = WatchedExporter()
    provider = TracerProvider(sampler=sampler)
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


# --------------------------------------------------------------------------- OTLP/HTTP


@dataclass(frozen=True)
class ReceivedSpan:
    """A span as an OTLP exporter sent it (ids in hex), with its process's service name."""

    service: str
    name: str
    kind: str  # SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    attributes: dict[str, Any]
    links: list[str]  # linked span ids


class OtlpReceiver:
    """A tiny OTLP/HTTP trace receiver on loopback (``POST /v1/traces``, protobuf), for
    tests that run Sluice in other processes: it decodes each ExportTraceServiceRequest and
    wakes :meth:`wait_until` waiters.

    What a collector does, per the OTLP specification (opentelemetry-proto,
    docs/specification.md, "OTLP/HTTP"): traces arrive as a POST to ``/v1/traces`` (the
    exporter appends it to OTEL_EXPORTER_OTLP_ENDPOINT) with a binary protobuf
    ExportTraceServiceRequest (``Content-Type: application/x-protobuf``); full success is
    HTTP 200 with an ExportTraceServiceResponse in the same encoding, whose fields are all
    optional (an empty one means nothing was rejected). Anything else — 4xx/5xx, retries,
    partial success — is not imitated: no test here needs the exporter's error paths."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._changed: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver._received(self.path, body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _received(self, path: str, body: bytes) -> None:
        assert path == "/v1/traces", path
        request = ExportTraceServiceRequest.FromString(body)
        received = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name")),
                            name=span.name,
                            kind=_KINDS[span.kind],
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes=_attributes(span.attributes),
                            links=[link.span_id.hex() for link in span.links],
                        )
                    )
        with self._lock:
            self.requests += 1
            self.spans.extend(received)
            waiters = list(self._changed)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    async def wait_until(
        self, satisfied: Callable[[list[ReceivedSpan]], bool], timeout_s: float = 30
    ) -> list[ReceivedSpan]:
        """Until the spans received so far satisfy ``satisfied``; returns them."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._changed.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    entry[1].clear()
                    with self._lock:
                        spans = list(self.spans)
                    if satisfied(spans):
                        return spans
                    await entry[1].wait()
        finally:
            with self._lock:
                self._changed.remove(entry)


_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def _attributes(values: Iterable[KeyValue]) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for item in values:
        kind = item.value.WhichOneof("value")
        decoded[item.key] = getattr(item.value, kind) if kind else None
    return decoded
