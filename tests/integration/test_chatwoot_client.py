"""ChatwootClient against the simulator over real loopback HTTP: replies and the idempotency
key, retries (429 with Retry-After, 5xx, network errors), no retries on 401/404/422,
deadlines, and the agent-bot token scope."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import formatdate

import httpx
import pytest

from sluice.chatwoot.client import (
    ChatwootClient,
    ChatwootDeadlineError,
    ChatwootError,
    parse_retry_after,
)
from sluice.simulator import ChatwootSimulator, SimulatorConfig

USER_TOKEN = "user-token-7f3a"
BOT_TOKEN = "bot-token-91c2"
MESSAGES_ROUTE = "/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages"


@dataclass
class Env:
    sim: ChatwootSimulator
    url: str
    conversation_id: int

    def client(self, token: str = USER_TOKEN, **kwargs: float) -> ChatwootClient:
        options: dict[str, float] = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 2}
        options.update(kwargs)
        return ChatwootClient(self.url, token, **options)  # type: ignore[arg-type]

    def statuses(self, method: str = "POST", route: str = MESSAGES_ROUTE) -> list[int]:
        return [c.status for c in self.sim.calls if c.method == method and c.route == route]


async def start(config: SimulatorConfig) -> Env:
    sim = ChatwootSimulator(config)
    url = await sim.serve("127.0.0.1", 0)
    conversation_id = await sim.create_conversation(7)
    sim.clear_calls()
    return Env(sim, url, conversation_id)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    environment = await start(
        SimulatorConfig(api_token=USER_TOKEN, bot_token=BOT_TOKEN, accounts=(7, 11))
    )
    try:
        yield environment
    finally:
        await environment.sim.aclose()


async def test_send_message_and_find_reply(env: Env) -> None:
    async with env.client() as client:
        sent = await client.send_message(7, env.conversation_id, "On its way!", reply_id="r-1")
        assert sent["content"] == "On its way!"
        assert sent["message_type"] == 1  # the API answers in push format
        assert sent["content_attributes"] == {"sluice_reply_id": "r-1"}
        assert sent["sender"]["type"] == "user"

        found = await client.find_reply(7, env.conversation_id, "r-1")
        assert found is not None and found["id"] == sent["id"]
        assert await client.find_reply(7, env.conversation_id, "r-2") is None

    replies = env.sim.replies(7, env.conversation_id)
    assert [r["content"] for r in replies] == ["On its way!"]
    assert replies[0]["received_at"] == pytest.approx(time.time(), abs=5)
    body = env.sim.calls[0].body
    assert body == {
        "content": "On its way!",
        "message_type": "outgoing",
        "private": False,
        "content_type": "text",
        "content_attributes": {"sluice_reply_id": "r-1"},
    }


async def test_find_reply_pages_back(env: Env) -> None:
    async with env.client() as client:
        await client.send_message(7, env.conversation_id, "stamped", reply_id="old")
        for n in range(25):  # pushes the stamped reply off the first page of 20
            await env.sim.customer_message(7, env.conversation_id, f"msg {n}")
        assert len(await client.list_messages(7, env.conversation_id)) == 20
        found = await client.find_reply(7, env.conversation_id, "old")
        assert found is not None and found["content"] == "stamped"
        assert await client.find_reply(7, env.conversation_id, "old", max_pages=1) is None


async def test_retries_429_honouring_retry_after(env: Env) -> None:
    env.sim.inject_fault(429, retry_after=1, path_contains="/messages", method="POST")
    async with env.client() as client:
        started = time.monotonic()
        await client.send_message(7, env.conversation_id, "hello")
        elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 2.0
    assert env.statuses() == [429, 200]
    assert len(env.sim.replies(7, env.conversation_id)) == 1


async def test_retry_after_is_capped(env: Env) -> None:
    env.sim.inject_fault(429, retry_after=120, path_contains="/messages")
    async with env.client(max_retry_after_s=0.05) as client:
        started = time.monotonic()
        await client.send_message(7, env.conversation_id, "hello")
        assert time.monotonic() - started < 1.0
    assert env.statuses() == [429, 200]


def test_parse_retry_after() -> None:
    now = time.time()
    assert parse_retry_after("3", now=now) == 3.0
    assert parse_retry_after("0.5", now=now) == 0.5
    assert parse_retry_after(None, now=now) is None
    assert parse_retry_after("soon", now=now) is None
    in_ten = parse_retry_after(formatdate(now + 10, usegmt=True), now=now)
    assert in_ten is not None and 8 <= in_ten <= 11
    assert parse_retry_after(formatdate(now - 100, usegmt=True), now=now) == 0.0


async def test_retries_500_with_backoff(env: Env) -> None:
    env.sim.inject_fault(500, count=2, path_contains="/messages")
    async with env.client() as client:
        await client.send_message(7, env.conversation_id, "hello")
    assert env.statuses() == [500, 500, 200]


async def test_gives_up_after_max_retries(env: Env) -> None:
    env.sim.inject_fault(503, count=10, path_contains="/messages")
    async with env.client(max_retries=2) as client:
        with pytest.raises(ChatwootError) as info:
            await client.send_message(7, env.conversation_id, "hello")
    assert info.value.status == 503 and info.value.retryable
    assert env.statuses() == [503, 503, 503]


async def test_bad_token_is_not_retried(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with env.client("wrong-token-0000") as client:
        with pytest.raises(ChatwootError) as info:
            await client.send_message(7, env.conversation_id, "hello")
        assert "wrong-token-0000" not in repr(client)
    assert info.value.status == 401 and not info.value.retryable
    assert "api_access_token is invalid" in info.value.message
    assert "Invalid Access Token" in info.value.message
    assert env.statuses() == [401]
    assert "wrong-token-0000" not in caplog.text
    assert "wrong-token-0000" not in str(info.value)


async def test_unknown_conversation_and_account_are_404(env: Env) -> None:
    async with env.client() as client:
        with pytest.raises(ChatwootError) as info:
            await client.send_message(7, 999, "hello")
        assert info.value.status == 404 and not info.value.retryable
        assert "display id" in info.value.message
        with pytest.raises(ChatwootError) as info:
            await client.get_conversation(12345, env.conversation_id)
        assert info.value.status == 404
    assert len(env.sim.calls) == 2


async def test_display_ids_are_per_account(env: Env) -> None:
    other = await env.sim.create_conversation(11)
    assert other == env.conversation_id == 1
    async with env.client() as client:
        await client.send_message(11, other, "for account 11")
    assert env.sim.replies(7, env.conversation_id) == []
    assert [r["content"] for r in env.sim.replies(11, other)] == ["for account 11"]


async def test_validation_error_is_422_and_not_retried(env: Env) -> None:
    async with env.client() as client:
        with pytest.raises(ChatwootError) as info:
            await client.send_message(7, env.conversation_id, "   ")
    assert info.value.status == 422 and not info.value.retryable
    assert "Content can't be blank" in info.value.message
    assert env.statuses() == [422]


async def test_deadline_stops_waiting_for_retry_after(env: Env) -> None:
    env.sim.inject_fault(429, retry_after=5, path_contains="/messages")
    async with env.client() as client:
        started = time.monotonic()
        with pytest.raises(ChatwootDeadlineError) as info:
            await client.send_message(7, env.conversation_id, "hello", deadline=time.time() + 0.5)
        assert time.monotonic() - started < 0.5  # gave up before the deadline, not after 5 s
    assert info.value.status == 429 and info.value.retryable
    assert env.statuses() == [429]


async def test_deadline_bounds_a_slow_request() -> None:
    slow = await start(SimulatorConfig(api_token=USER_TOKEN, latency_ms=(400, 400)))
    try:
        async with slow.client() as client:
            started = time.monotonic()
            with pytest.raises(ChatwootDeadlineError):
                await client.get_conversation(7, slow.conversation_id, deadline=time.time() + 0.15)
            assert time.monotonic() - started < 0.39  # the server would take 0.4 s
            with pytest.raises(ChatwootDeadlineError):
                await client.get_conversation(7, slow.conversation_id, deadline=time.time() - 1)
    finally:
        await slow.sim.aclose()


async def test_network_errors_are_retried_then_reported() -> None:
    client = ChatwootClient("http://127.0.0.1:9", USER_TOKEN, max_retries=1, backoff_base_s=0.01)
    async with client:
        with pytest.raises(ChatwootError) as info:
            await client.get_conversation(7, 1)
    assert info.value.status is None and info.value.retryable
    assert "network error" in info.value.message


async def test_bot_token_scope(env: Env) -> None:
    async with env.client(BOT_TOKEN) as bot, env.client() as user:
        with pytest.raises(ChatwootError) as info:
            await bot.list_agents(7)
        assert info.value.status == 401 and not info.value.retryable
        assert "not authorized for bots" in info.value.message
        with pytest.raises(ChatwootError) as info:
            await bot.list_messages(7, env.conversation_id)
        assert info.value.status == 401

        agents = await user.list_agents(7)
        assert [a["id"] for a in agents] == [23, 24]
        assert {"id", "name", "email", "role", "availability_status"} <= set(agents[0])

        sent = await bot.send_message(7, env.conversation_id, "bot here", reply_id="b-1")
        assert sent["sender"]["type"] == "agent_bot"
        # Bots may not list messages: find_reply falls back to the conversation's last message.
        found = await bot.find_reply(7, env.conversation_id, "b-1")
        assert found is not None and found["id"] == sent["id"]
        # So does recent_messages (a retried turn's "what did we answer?"), not a 401.
        recent = await bot.recent_messages(7, env.conversation_id)
        assert sent["id"] in [m["id"] for m in recent]
        listed = await user.recent_messages(7, env.conversation_id)
        assert sent["id"] in [m["id"] for m in listed]


async def test_ambiguous_failure_does_not_post_twice(env: Env) -> None:
    # The message is written, then the client sees a 504 (a proxy timing out).
    env.sim.inject_fault(504, path_contains="/messages", method="POST", after_processing=True)
    async with env.client() as client:
        sent = await client.send_message(7, env.conversation_id, "only once", reply_id="r-9")
    assert sent["content_attributes"]["sluice_reply_id"] == "r-9"
    assert [r["content"] for r in env.sim.replies(7, env.conversation_id)] == ["only once"]
    assert env.statuses("POST") == [504]
    assert env.statuses("GET") == [200]


async def test_without_reply_id_an_ambiguous_failure_duplicates(env: Env) -> None:
    env.sim.inject_fault(504, path_contains="/messages", method="POST", after_processing=True)
    async with env.client() as client:
        await client.send_message(7, env.conversation_id, "twice")
    assert len(env.sim.replies(7, env.conversation_id)) == 2


async def test_handoff_operations(env: Env) -> None:
    async with env.client() as client:
        result = await client.toggle_status(7, env.conversation_id, "open")
        assert result == {
            "success": True,
            "current_status": "open",
            "conversation_id": env.conversation_id,
        }
        assignee = await client.assign(7, env.conversation_id, assignee_id=24)
        assert assignee is not None and assignee["id"] == 24
        assert await client.set_labels(7, env.conversation_id, ["vip", "refund"]) == [
            "vip",
            "refund",
        ]
        assert await client.set_labels(7, env.conversation_id, ["refund"]) == ["refund"]
        assert await client.get_labels(7, env.conversation_id) == ["refund"]
        conversation = await client.get_conversation(7, env.conversation_id)
        assert conversation["status"] == "open"
        assert conversation["meta"]["assignee"]["id"] == 24
        assert conversation["labels"] == ["refund"]
        with pytest.raises(ValueError):
            await client.toggle_status(7, env.conversation_id, "closed")
        with pytest.raises(ValueError):
            await client.assign(7, env.conversation_id)


async def test_calls_beyond_max_connections_wait_for_one() -> None:
    """At most ``max_connections`` requests are on the wire at once; the rest wait their turn
    (each worker slot may call Chatwoot, and a worker has more slots than connections)."""
    in_flight, peak, release, both_in = 0, 0, asyncio.Event(), asyncio.Event()

    async def chatwoot(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == 2:
            both_in.set()
        await release.wait()
        in_flight -= 1
        return httpx.Response(200, json={"id": 1, "content": "ok"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(chatwoot))
    client = ChatwootClient("http://chatwoot.test", USER_TOKEN, max_connections=2, http=http)
    async with client:
        calls = [asyncio.create_task(client.send_message(7, 1, f"m{i}")) for i in range(6)]
        await both_in.wait()
        for _ in range(20):
            await asyncio.sleep(0)  # every other call had its chance to go out: none did
        assert in_flight == 2
        release.set()
        await asyncio.gather(*calls)
    assert peak == 2


async def test_a_call_that_finds_no_free_connection_in_time_was_never_sent() -> None:
    held = asyncio.Event()
    sent: list[str] = []

    async def chatwoot(request: httpx.Request) -> httpx.Response:
        sent.append(request.content.decode())
        held.set()
        await asyncio.Event().wait()  # holds the only connection
        raise AssertionError("unreachable")

    http = httpx.AsyncClient(transport=httpx.MockTransport(chatwoot))
    client = ChatwootClient(
        "http://chatwoot.test",
        USER_TOKEN,
        max_connections=1,
        max_retries=0,
        timeout_s=0.2,
        http=http,
    )
    async with client:
        first = asyncio.create_task(client.send_message(7, 1, "first"))
        await held.wait()
        with pytest.raises(ChatwootError, match="PoolTimeout"):
            await client.send_message(7, 1, "second")
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError, ChatwootError):
            await first
    assert len(sent) == 1  # the second never went out
