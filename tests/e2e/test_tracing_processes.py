"""One trace per message across processes: ``sluice serve`` and ``sluice worker`` run as
child processes configured by the standard OTEL_* variables (OTLP over HTTP to a receiver
on loopback in this test), and the spans both export join into one trace per customer
message, with the worker's spans the children of the API's."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import redis.asyncio as aioredis

from sluice.loadtest import LoadConfig
from tests.tracing_support import OtlpReceiver, ReceivedSpan

from ..integration.conftest import delete_queue_keys
from ..reliability.system import ProcessSystem

ACCOUNT = 7
WEBHOOK = "POST /webhooks/chatwoot"
REPLY_POST = "POST /api/v1/accounts/{account_id}/conversations/{conversation_id}/messages"


def queued_webhooks(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [
        s
        for s in spans
        if s.name == WEBHOOK and s.attributes.get("sluice.intake.status") == "queued"
    ]


def complete(spans: list[ReceivedSpan], messages: int) -> bool:
    """Every message's webhook and its reply's POST have been exported."""
    posts = [s for s in spans if s.name == REPLY_POST]
    return len(queued_webhooks(spans)) >= messages and len(posts) >= messages


async def test_api_and_worker_processes_export_one_trace_per_message(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str, tmp_path: Path
) -> None:
    with OtlpReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "50",  # export within 50 ms, not 5 s
        }
        try:
            async with ProcessSystem(
                redis_url, queue_name, tmp_path, cfg=LoadConfig(), env=env
            ) as system:
                sim = system.sim
                for line in ("Where is my parcel?", "Can I change my address?"):
                    conversation = await sim.create_conversation(ACCOUNT)
                    sent = await sim.customer_message(ACCOUNT, conversation, line)
                    await sim.wait_for_reply(
                        ACCOUNT, conversation, after_message_id=sent["id"], timeout=30
                    )
                spans = await receiver.wait_until(lambda got: complete(got, 2))
        finally:
            await delete_queue_keys(redis_client, queue_name)

    webhooks = queued_webhooks(spans)
    assert len(webhooks) == 2
    by_trace: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    assert len({w.trace_id for w in webhooks}) == 2  # one trace per message
    for webhook in webhooks:
        trace = by_trace[webhook.trace_id]
        named = {s.name: s for s in trace}
        send = named[f"send {queue_name}"]
        wait, process = named["queue wait"], named[f"process {queue_name}"]
        turn, broker, post = named["turn"], named["broker call"], named[REPLY_POST]
        # Two processes, each with its service name, one tree.
        assert {webhook.service, send.service} == {"sluice-api"}
        assert {wait.service, process.service, turn.service, post.service} == {"sluice-worker"}
        assert webhook.parent_id == "" and webhook.kind == "SERVER"
        assert send.parent_id == webhook.span_id and send.kind == "PRODUCER"
        assert wait.parent_id == send.span_id and process.parent_id == send.span_id
        assert process.kind == "CONSUMER" and process.links == [send.span_id]
        assert turn.parent_id == process.span_id
        assert broker.parent_id == turn.span_id and post.parent_id == turn.span_id
        assert post.kind == "CLIENT" and post.attributes["http.response.status_code"] == 200
        assert process.attributes["messaging.message.id"] == send.attributes["messaging.message.id"]
        assert process.attributes["messaging.sluice.outcome"] == "completed"
