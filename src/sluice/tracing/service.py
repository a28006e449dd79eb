"""The Chatwoot service's spans, around the engine's (docs/tracing.md has the tree):

- ``POST /webhooks/chatwoot`` (SERVER), the intake of one webhook: the root of a message's
  trace (or a child of a ``traceparent`` the request came with, as HTTP servers do), and the
  parent of the message's ``send`` span;
- ``spool replay`` (INTERNAL), a spooled webhook moved into the queue later: a child of the
  webhook span, whose context the spool kept with the webhook;
- ``turn`` (INTERNAL), the reply pipeline's turn, a child of the worker's ``process`` span;
- ``broker call`` (INTERNAL), the broker's reply handler answering the turn;
- one CLIENT span per HTTP request to Chatwoot (the reply's POST among them), named and
  attributed after the HTTP client conventions: ``POST
  /api/v1/accounts/{account_id}/conversations/{conversation_id}/messages``.

The HTTP attributes follow the stable HTTP conventions (``http.request.method``,
``http.response.status_code``, ``url.full``, ``server.address``...); Sluice's own are under
``sluice.*``. No token, secret, signature or message content ever goes into a span: the
Chatwoot token travels in a header no span records, and ``url.full`` is given redacted.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from sluice.tracing import spans

if TYPE_CHECKING:
    from sluice.queue.job import Job

ERROR_TYPE = "error.type"
# HTTP conventions (stable):
METHOD = "http.request.method"
STATUS_CODE = "http.response.status_code"
ROUTE = "http.route"
RESEND_COUNT = "http.request.resend_count"
BODY_SIZE = "http.request.body.size"
URL_FULL = "url.full"
URL_PATH = "url.path"
URL_SCHEME = "url.scheme"
URL_TEMPLATE = "url.template"  # HTTP conventions (experimental): the low-cardinality path
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
# Sluice's own:
INTAKE_STATUS = "sluice.intake.status"  # queued, duplicate, ignored, spooled, ...
SPOOL_SEQ = "sluice.spool.seq"
CONVERSATION = "sluice.conversation"  # "<account>:<conversation>", the lane's key
TURN_LINES = "sluice.turn.lines"  # customer lines answered in the turn
TURN_OUTCOME = "sluice.turn.outcome"  # replied, handed_off, skipped, already_answered
BROKER_NAME = "sluice.broker.name"
BROKER_KIND = "sluice.broker.kind"  # ai, human
BROKER_HANDLER = "sluice.broker.handler"  # template, llm, handoff, ...
REPLY_HANDOFF = "sluice.reply.handoff"  # the handler asked for a human

# Ids in a Chatwoot path, for url.template.
_ACCOUNT = re.compile(r"/accounts/\d+")
_CONVERSATION = re.compile(r"/conversations/\d+")
_ID = re.compile(r"/\d+(?=/|$)")


@contextlib.contextmanager
def webhook(route: str, url: str, headers: Mapping[str, str], body_size: int) -> Iterator[Span]:
    """The intake's SERVER span of one webhook; current inside, so the message's ``send``
    span is its child. Set its answer with :func:`answered`."""
    parts = urlsplit(url)
    attributes: dict[str, AttributeValue] = {
        METHOD: "POST",
        ROUTE: route,
        URL_PATH: parts.path,
        URL_SCHEME: parts.scheme,
        BODY_SIZE: body_size,
    }
    if parts.hostname:
        attributes[SERVER_ADDRESS] = parts.hostname
    if parts.port:
        attributes[SERVER_PORT] = parts.port
    with spans.TRACER.start_as_current_span(
        f"POST {route}",
        context=spans.from_headers(headers),
        kind=SpanKind.SERVER,
        attributes=attributes,
    ) as span:
        yield span


def answered(span: Span, status: int, body: Mapping[str, Any]) -> None:
    """The webhook's answer: its HTTP status (a server span is an error only for a 5xx, by
    the HTTP conventions) and what the intake did with it."""
    span.set_attribute(STATUS_CODE, status)
    outcome = body.get("status") or body.get("error")
    if isinstance(outcome, str):
        span.set_attribute(INTAKE_STATUS, outcome)
    if status >= 500:
        span.set_attribute(ERROR_TYPE, str(status))
        span.set_status(Status(StatusCode.ERROR))


@contextlib.contextmanager
def spool_replay(traceparent: str | None, seq: int) -> Iterator[Span]:
    """A spooled webhook replayed into the queue, in the trace of the webhook that was
    spooled (a root of its own if it was spooled without tracing)."""
    parent = spans.context_of(traceparent)
    with spans.TRACER.start_as_current_span(
        "spool replay",
        context=parent if parent is not None else Context(),
        attributes={SPOOL_SEQ: seq},
    ) as span:
        yield span


@contextlib.contextmanager
def turn(job: Job) -> Iterator[Span]:
    """The pipeline's turn (a child of the worker's ``process`` span). Its outcome is read
    from the hops the pipeline marks, so the pipeline itself needs no tracing code."""
    attributes: dict[str, AttributeValue] = {
        CONVERSATION: job.key,
        TURN_LINES: len(job.members),
    }
    with spans.TRACER.start_as_current_span("turn", attributes=attributes) as span:
        try:
            yield span
        finally:
            span.set_attribute(TURN_OUTCOME, _turn_outcome(job.marks))


def _turn_outcome(marks: Mapping[str, float]) -> str:
    if "skipped" in marks:
        return "skipped"
    if "handed_off" in marks:
        return "handed_off"
    if "reply_sent" in marks:
        return "replied"
    if "reply_generated" in marks:
        return "no_reply"
    return "already_answered" if "broker_assigned" in marks else "none"


@contextlib.contextmanager
def broker_call(name: str, kind: str, handler: str) -> Iterator[Span]:
    """The broker's handler answering the turn. An exception ends it as an error with its
    type only: a handler's message may quote what it was sent."""
    attributes: dict[str, AttributeValue] = {
        BROKER_NAME: name,
        BROKER_KIND: kind,
        BROKER_HANDLER: handler,
    }
    with spans.TRACER.start_as_current_span(
        "broker call", attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as exc:  # a cancellation too (budget spent, lease lost)
            _failed(span, exc)
            raise


def _failed(span: Span, exc: BaseException) -> None:
    """An error by its type alone (no message: it may quote a request or an answer)."""
    span.set_attribute(ERROR_TYPE, spans.error_type(exc))
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def replied(span: Span, handoff: bool) -> None:
    span.set_attribute(REPLY_HANDOFF, handoff)


@contextlib.contextmanager
def http_client(method: str, redacted_url: str, resend: int) -> Iterator[Span]:
    """One HTTP request to Chatwoot (CLIENT). ``redacted_url`` must already be free of
    credentials; ``resend`` counts the earlier attempts of the same call. A failure without
    an answer records its exception type only (``error.type``); an answer's status is set
    with :func:`http_status`."""
    parts = urlsplit(redacted_url)
    template = _template(parts.path)
    attributes: dict[str, AttributeValue] = {
        METHOD: method,
        URL_FULL: redacted_url,
        URL_TEMPLATE: template,
    }
    if parts.hostname:
        attributes[SERVER_ADDRESS] = parts.hostname
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    if port:
        attributes[SERVER_PORT] = port
    if resend:
        attributes[RESEND_COUNT] = resend
    with spans.TRACER.start_as_current_span(
        f"{method} {template}",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:  # a cancellation too (budget spent, lease lost)
            _failed(span, exc)
            raise


def http_status(span: Span, status: int) -> None:
    """An answer's status; a client span is an error from 400 on (HTTP conventions)."""
    span.set_attribute(STATUS_CODE, status)
    if status >= 400:
        span.set_attribute(ERROR_TYPE, str(status))
        span.set_status(Status(StatusCode.ERROR))


def _template(path: str) -> str:
    """A Chatwoot path with its ids as placeholders (``url.template``)."""
    path = _ACCOUNT.sub("/accounts/{account_id}", path)
    path = _CONVERSATION.sub("/conversations/{conversation_id}", path)
    return _ID.sub("/{id}", path)
