"""The engine's spans, after the OpenTelemetry messaging semantic conventions
(https://opentelemetry.io/docs/specs/semconv/messaging/messaging-spans/):

- ``send <queue>`` (PRODUCER) around ``Queue.add``/``enqueue``'s script: its context is the
  message's creation context, which the job carries (``tp``, see :mod:`sluice.tracing.spans`);
- a bulk enqueue (``Queue.enqueue_many``) makes one ``create <queue>`` (PRODUCER) per message,
  whose context that message carries, and one ``send <queue>`` (CLIENT) around the pipelined
  round trip, linked to every creation context (the conventions' batch-sending shape), so
  each message still starts a trace of its own;
- ``queue wait`` (INTERNAL), a child of the message's creation context, from when the job last
  became waiting (enqueued, failed for a retry, or retried from the dead letters) until it was
  reserved, or left the prefetch buffer: Redis's clock, read from the job's hops;
- ``process <queue>`` (CONSUMER) around the handler, a child of the turn's first message's
  creation context, linked to the creation context of every message of the turn (the
  conventions: a process span SHOULD link each message it accounts for, and MAY take a single
  message's creation context as parent). A burst answered in one turn therefore lives in the
  first message's trace; the other messages' traces end with their queue wait, whose link
  leads to the turn.

Attribute names follow the conventions where one exists (comments say which); Sluice's own
are in the ``messaging.sluice.*`` namespace the conventions reserve for a system's own
attributes. Nothing of a payload goes into a span but its size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from sluice.tracing import spans

if TYPE_CHECKING:
    from sluice.queue.job import Job

# messaging.system: the conventions list well-known brokers (kafka, rabbitmq, aws_sqs, ...);
# none fits and "redis" is not one of them (Sluice's lanes, leases and deadlines are its own
# protocol, in Lua, on top of Redis), so the custom value the conventions allow.
SYSTEM = "sluice"
SYSTEM_ATTR = "messaging.system"  # messaging, Required
OPERATION_TYPE = "messaging.operation.type"  # messaging, Conditionally Required
OPERATION_NAME = "messaging.operation.name"  # messaging, Required
DESTINATION = "messaging.destination.name"  # messaging, Conditionally Required: the queue
MESSAGE_ID = "messaging.message.id"  # messaging, Recommended (single message): the job id
CONVERSATION = "messaging.message.conversation_id"  # messaging, Recommended: the lane's key
BODY_SIZE = "messaging.message.body.size"  # messaging, Recommended: the JSON payload's bytes
BATCH_COUNT = "messaging.batch.message_count"  # messaging, batches only
CLIENT_ID = "messaging.client.id"  # messaging, Recommended: the worker's id
ERROR_TYPE = "error.type"  # general conventions: the exception's class
# Sluice's own (messaging.{system}.* namespace):
SOURCE_ID = "messaging.sluice.source_message_id"  # the id given to enqueue (``cw-<id>``)
DUPLICATE = "messaging.sluice.duplicate"  # the enqueue found the source id already queued
ATTEMPT = "messaging.sluice.attempt"  # this run's attempt (1 = first)
PRIORITY = "messaging.sluice.priority"  # the priority class
OUTCOME = "messaging.sluice.outcome"  # completed, retry, dead, lost, handed_back

WAIT_SPAN = "queue wait"
_WAITING_SINCE = ("enqueued", "failed", "retried")  # hops after which a job waits again


def _base(queue: str, operation: str) -> dict[str, AttributeValue]:
    return {
        SYSTEM_ATTR: SYSTEM,
        OPERATION_TYPE: operation,
        OPERATION_NAME: operation,
        DESTINATION: queue,
    }


# ---------------------------------------------------------------- producer


@dataclass(slots=True)
class Sent:
    """What :func:`sending` learns once the script answered (the job id)."""

    span: Span

    def message(self, job_id: str, *, duplicate: bool) -> None:
        self.span.set_attribute(MESSAGE_ID, job_id)
        if duplicate:
            self.span.set_attribute(DUPLICATE, True)


@contextlib.contextmanager
def sending(
    queue: str, key: str, source_id: str | None, body_size: int, args: list[Any]
) -> Iterator[Sent]:
    """A ``send <queue>`` span around one enqueue; appends its ``traceparent`` to the
    script's ``args`` (enqueue.lua reads it after the hops)."""
    attributes = _base(queue, "send")
    attributes[CONVERSATION] = key
    attributes[BODY_SIZE] = body_size
    if source_id:
        attributes[SOURCE_ID] = source_id
    with spans.TRACER.start_as_current_span(
        f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        args.append(spans.traceparent(span))
        try:
            yield Sent(span)
        except Exception as exc:
            span.set_attribute(ERROR_TYPE, spans.error_type(exc))
            raise


@contextlib.contextmanager
def sending_batch(queue: str, keys: Sequence[str]) -> Iterator[list[str]]:
    """One ``create <queue>`` span per message (each a child of the current context, so a
    message enqueued outside any span starts its own trace) and one ``send <queue>`` span
    around the round trip, linked to them all; yields each message's ``traceparent``."""
    links: list[Link] = []
    traceparents: list[str] = []
    for key in keys:
        attributes = _base(queue, "create")
        attributes[CONVERSATION] = key
        created = spans.TRACER.start_span(
            f"create {queue}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        created.end()
        traceparents.append(spans.traceparent(created))
        links.append(Link(created.get_span_context()))
    attributes = _base(queue, "send")
    attributes[BATCH_COUNT] = len(traceparents)
    with spans.TRACER.start_as_current_span(
        f"send {queue}", kind=SpanKind.CLIENT, attributes=attributes, links=links
    ) as span:
        try:
            yield traceparents
        except Exception as exc:
            span.set_attribute(ERROR_TYPE, spans.error_type(exc))
            raise


# ---------------------------------------------------------------- consumer


@dataclass(slots=True)
class Processing:
    """A running ``process`` span, current in the handler's task until :func:`end_process`."""

    span: Span
    token: Token[Context]


def start_process(job: Job, queue: str) -> Processing:
    """Open the ``process <queue>`` span of a turn starting now (current from here on in
    this task, so the handler's spans are its children), and record each message's
    ``queue wait``. When every message was created unsampled and the sampler follows the
    parent, each of those spans would be a non-recording one: the first message's creation
    context is made current instead (the handler's spans inherit its decision: no orphan
    traces), which saves a sampled-out turn the SDK's span work (docs/tracing.md)."""
    members = job.members
    # Each message's creation context, parsed once: the parent, the links, the waits.
    created = [(m, spans.span_context_of(m.traceparent)) for m in members]
    first = created[0][1]
    if (
        spans.FOLLOWS_PARENT
        and first is not None
        and all(sc is not None and not sc.trace_flags.sampled for _, sc in created)
    ):
        unsampled = NonRecordingSpan(first)
        return Processing(unsampled, context_api.attach(trace.set_span_in_context(unsampled)))
    now = spans.now_ns()
    parent = spans.parent_context(first) if first is not None else Context()
    links = [Link(sc, {MESSAGE_ID: m.id}) for m, sc in created if sc is not None]
    attributes = _base(queue, "process")
    attributes[CONVERSATION] = job.key
    attributes[ATTEMPT] = job.attempt
    attributes[PRIORITY] = job.priority
    if len(members) > 1:
        attributes[BATCH_COUNT] = len(members)
    else:
        attributes[MESSAGE_ID] = job.id
    if job.lease is not None and job.lease.worker_id:
        attributes[CLIENT_ID] = job.lease.worker_id
    span = spans.TRACER.start_span(
        f"process {queue}",
        # No creation context: a trace of its own (an empty context, never whatever the
        # worker's loop happens to run in).
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=links,
        start_time=now,
    )
    for member, span_context in created:
        if span_context is not None:
            _queue_wait(member, queue, spans.parent_context(span_context), now)
        elif member is job:  # no creation context: the wait goes under the run
            _queue_wait(member, queue, trace.set_span_in_context(span), now)
    token = context_api.attach(trace.set_span_in_context(span))
    return Processing(span, token)


def end_process(processing: Processing, outcome: str, error: BaseException | None = None) -> None:
    """End the ``process`` span: how the turn ended (``completed``, ``retry``, ``dead``,
    ``lost``, ``handed_back``) and, for a failure, the exception."""
    context_api.detach(processing.token)
    span = processing.span
    span.set_attribute(OUTCOME, outcome)
    if error is not None:
        span.set_attribute(ERROR_TYPE, spans.error_type(error))
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}"))
    elif outcome == "lost":
        span.set_status(Status(StatusCode.ERROR, "lease lost"))
    span.end()


def _queue_wait(job: Job, queue: str, parent: Context, now: int) -> None:
    """The ``queue wait`` span of one message, from its hops (Redis's clock)."""
    hops = job.hops
    until_ms = hops.get("started") or hops.get("reserved")
    end = spans.epoch_ns(until_ms) if until_ms else now
    since = [hops[h] for h in _WAITING_SINCE if h in hops and hops[h] <= (until_ms or hops[h])]
    start = min(end, spans.epoch_ns(max(since))) if since else end
    attributes: dict[str, AttributeValue] = {
        SYSTEM_ATTR: SYSTEM,
        DESTINATION: queue,
        MESSAGE_ID: job.id,
        CONVERSATION: job.key,
        ATTEMPT: job.attempt,
    }
    span = spans.TRACER.start_span(
        WAIT_SPAN, context=parent, kind=SpanKind.INTERNAL, attributes=attributes, start_time=start
    )
    span.end(end_time=end)
