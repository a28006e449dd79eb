"""One trace per customer message through the real service: the Chatwoot simulator sends a
signed webhook to the real API, a worker with the reply pipeline answers, and the spans of
intake, send, queue wait, process, turn, broker call and the reply's POST form one tree.
Also: a webhook spooled while Redis could not take it keeps its trace through the replay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from sluice import Queue, tracing
from sluice.loadtest import LoadConfig, run_system_with_simulator
from sluice.service.runtime import Runtime
from sluice.service.spool import Spool
from sluice.service.spool_replay import SpoolReplayer
from sluice.settings.config import load_settings
from sluice.simulator import ChatwootSimulator
from sluice.tracing import spans as context
from tests.tracing_support import (
    WatchedExporter,
    captured_spans,
    in_trace,
    is_child,
    named,
    one,
    trace_id,
)

from ..integration.conftest import delete_queue_keys

ACCOUNT = 7
WEBHOOK = "POST /webhooks/chatwoot"
REPLY_POST = "POST /api/v1/accounts/{account_id}/conversations/{conversation_id}/messages"


@pytest.fixture
def spans() -> Iterator[WatchedExporter]:
    with captured_spans() as exporter:
        yield exporter


@pytest.fixture
async def cleanup(redis_client: aioredis.Redis, queue_name: str) -> Any:
    yield
    await delete_queue_keys(redis_client, queue_name)


def check_message_trace(trace: list[ReadableSpan], queue: str, token: str) -> None:
    """The tree of one answered message, every span in one trace."""
    webhook = one(trace, WEBHOOK)
    send = one(trace, f"send {queue}")
    wait = one(trace, "queue wait")
    process = one(trace, f"process {queue}")
    turn = one(trace, "turn")
    broker = one(trace, "broker call")
    post = one(trace, REPLY_POST)
    assert webhook.parent is None and webhook.kind is SpanKind.SERVER
    assert is_child(send, webhook) and send.kind is SpanKind.PRODUCER
    assert is_child(wait, send) and is_child(process, send)
    assert is_child(turn, process) and is_child(broker, turn)
    assert is_child(post, turn) and post.kind is SpanKind.CLIENT

    assert webhook.attributes is not None
    assert webhook.attributes["http.request.method"] == "POST"
    assert webhook.attributes["http.route"] == "/webhooks/chatwoot"
    assert webhook.attributes["http.response.status_code"] == 200
    assert webhook.attributes["sluice.intake.status"] == "queued"
    assert turn.attributes is not None
    assert turn.attributes["sluice.turn.outcome"] == "replied"
    assert turn.attributes["sluice.turn.lines"] == 1
    assert broker.attributes is not None
    assert broker.attributes["sluice.broker.kind"] == "ai"
    assert broker.attributes["sluice.reply.handoff"] is False
    assert post.attributes is not None
    assert post.attributes["http.request.method"] == "POST"
    assert post.attributes["http.response.status_code"] == 200
    assert post.attributes["server.address"] == "127.0.0.1"
    assert post.attributes["url.template"] == REPLY_POST.removeprefix("POST ")
    assert str(post.attributes["url.full"]).endswith("/messages")
    assert post.status.status_code is StatusCode.UNSET
    for span in trace:  # no secret and no message content in any span
        text = repr(dict(span.attributes or {})) + repr([e.attributes for e in span.events])
        assert token not in text and "order" not in text.lower()


async def test_each_message_is_one_trace_from_webhook_to_reply(
    spans: WatchedExporter, redis_url: str, queue_name: str, cleanup: None
) -> None:
    settings = load_settings({"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name})
    conversations: list[int] = []

    async def body(sim: ChatwootSimulator, runtime: Runtime, api_url: str) -> dict[str, Any]:
        for line in ("Where is my order?", "My order number is 1234"):
            conversation = await sim.create_conversation(ACCOUNT)
            conversations.append(conversation)
            sent = await sim.customer_message(ACCOUNT, conversation, line)
            await sim.wait_for_reply(ACCOUNT, conversation, after_message_id=sent["id"], timeout=30)
        await spans.wait_for(f"process {queue_name}", 2)
        return {"token": sim.config.api_token}

    result = await run_system_with_simulator(
        settings, redis_url, LoadConfig(), body, queue=queue_name
    )
    finished = spans.get_finished_spans()
    webhooks = [
        w
        for w in named(finished, WEBHOOK)
        if (w.attributes or {}).get("sluice.intake.status") == "queued"
    ]
    traces = {trace_id(w) for w in webhooks}
    assert len(webhooks) == 2 and len(traces) == 2  # two messages, two traces
    for trace in traces:
        check_message_trace(in_trace(finished, trace), queue_name, result["token"])


async def test_a_spooled_webhook_keeps_its_trace_through_the_replay(
    spans: WatchedExporter,
    tmp_path: Path,
    redis_client: aioredis.Redis,
    queue_name: str,
    cleanup: None,
) -> None:
    assert tracing.enabled
    queue = Queue(queue_name, redis=redis_client)
    spool = Spool(tmp_path / "spool.sqlite3")
    await spool.open()
    replayed: list[str] = []

    async def replay(row: Any) -> None:
        replayed.append((await queue.add("7:1", {"n": row.seq})).job_id)

    try:
        with context.TRACER.start_as_current_span("webhook") as webhook:
            await spool.append(b"{}", {"x-chatwoot-delivery": "d-1"}, 1.0, "7:1")
        (row,) = await spool.after(0, 10)
        assert "traceparent" in row.headers  # kept with the webhook
        await SpoolReplayer(spool, replay)._replay_until_stored(row)
    finally:
        await spool.close()
    assert len(replayed) == 1
    finished = spans.get_finished_spans()
    replay_span = one(finished, "spool replay")
    assert is_child(replay_span, one(finished, "webhook"))
    assert trace_id(replay_span) == webhook.get_span_context().trace_id
    assert is_child(one(finished, f"send {queue.name}"), replay_span)
    assert replay_span.attributes is not None and replay_span.attributes["sluice.spool.seq"] == 1
