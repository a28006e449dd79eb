"""The llm handler against a faithful fake OpenAI-compatible server (real HTTP, uvicorn).

The fake implements ``POST /v1/chat/completions`` with bearer auth and the real response
shape; each test sets its delay and status code and reads back the requests it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sluice.api.server import ApiServer
from sluice.broker.base import CustomerLine, HandlerError, Turn
from sluice.broker.config import Broker
from sluice.broker.handlers import get_handler, load_handler_settings
from sluice.broker.handlers.llm import LlmHandler
from sluice.broker.meter import BrokerMeter, MeteredHandler

API_KEY = "sk-test-0123456789abcdef"
BOT = Broker(name="llm-bot", kind="ai", handler="llm")


@dataclass
class FakeLlm:
    """Behaviour and record of the fake server."""

    base_url: str = ""
    delay_s: float = 0.0
    status: int = 200
    content: str | None = "Your order ships tomorrow."
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)


async def completions(fake: FakeLlm, request: Request) -> JSONResponse:
    """POST /v1/chat/completions as OpenAI answers it (bearer auth, response shape)."""
    body = await request.json()
    fake.requests.append(body)
    fake.headers.append(dict(request.headers))
    authorization = request.headers.get("authorization")
    if authorization != f"Bearer {API_KEY}":
        return JSONResponse(
            {
                "error": {
                    "message": f"Incorrect API key provided: {authorization}",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            status_code=401,
        )
    if fake.delay_s:
        # Cancellable wait, so the server can shut down without sitting out the delay.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fake.released.wait(), fake.delay_s)
    if fake.status == 429:
        # OpenAI's rate limit answer: a 429 with an error body and the wait in Retry-After.
        return JSONResponse(
            {"error": {"message": "Rate limit reached for requests", "type": "requests"}},
            status_code=429,
            headers={"retry-after": "3"},
        )
    if fake.status != 200:
        return JSONResponse(
            {"error": {"message": "upstream trouble", "type": "server_error"}},
            status_code=fake.status,
        )
    return JSONResponse(
        {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": fake.content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
        }
    )


# One server for the module (uvicorn start/stop costs ~0.2 s); every test gets fresh state.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[tuple[ApiServer, list[FakeLlm]]]:
    current: list[FakeLlm] = [FakeLlm()]
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def route(request: Request) -> JSONResponse:
        return await completions(current[0], request)

    api = ApiServer(app, "127.0.0.1", 0)
    base = await api.start()
    current[0].base_url = base + "/v1"
    try:
        yield api, current
    finally:
        current[0].released.set()
        await api.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def fake(server: tuple[ApiServer, list[FakeLlm]]) -> AsyncIterator[FakeLlm]:
    _, current = server
    state = FakeLlm(base_url=current[0].base_url)
    current[0] = state
    try:
        yield state
    finally:
        state.released.set()  # let a deliberately slow request finish now


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def make_turn(
    budget_ms: float,
    *contents: str,
    history: list[dict[str, str]] | None = None,
) -> Turn:
    now = time.time() * 1000
    return Turn(
        account_id=1,
        conversation_id=42,
        key="1:42",
        lines=[
            CustomerLine(message_id=100 + i, content=c, created_at_ms=now, attachments=0)
            for i, c in enumerate(contents)
        ],
        history=history or [],
        broker=BOT,
        deadline_ms=now + budget_ms,
        attempt=1,
        last_attempt=False,
    )


def handler(fake: FakeLlm, http: httpx.AsyncClient, **kwargs: Any) -> LlmHandler:
    options: dict[str, Any] = {"min_budget_ms": 300, "safety_margin_ms": 100}
    options.update(kwargs)
    return LlmHandler(fake.base_url, "gpt-test", API_KEY, None, http=http, **options)


async def test_request_shape_and_auth(fake: FakeLlm, http: httpx.AsyncClient) -> None:
    history = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hi! How can I help?"},
    ]
    reply = await handler(fake, http).answer(
        make_turn(10_000, "where is my order", "it's #123", history=history)
    )
    assert reply.content == "Your order ships tomorrow." and not reply.handoff
    (body,) = fake.requests
    assert body["model"] == "gpt-test"
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"]  # the default system prompt
    assert messages[1:3] == history
    assert messages[-1] == {"role": "user", "content": "where is my order\nit's #123"}
    assert fake.headers[0]["authorization"] == f"Bearer {API_KEY}"
    assert fake.headers[0]["content-type"] == "application/json"


async def test_history_order_is_kept(fake: FakeLlm, http: httpx.AsyncClient) -> None:
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(6)
    ]
    history.insert(2, {"role": "system", "content": "injected"})  # not a history role: dropped
    await handler(fake, http).answer(make_turn(10_000, "next", history=history))
    contents = [m["content"] for m in fake.requests[0]["messages"][1:]]
    assert contents == ["m0", "m1", "m2", "m3", "m4", "m5", "next"]


async def test_system_prompt_file(fake: FakeLlm, http: httpx.AsyncClient, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You sell tents.\n", encoding="utf-8")
    h = LlmHandler(fake.base_url, "m", API_KEY, prompt, http=http)
    await h.answer(make_turn(10_000, "hi"))
    assert fake.requests[0]["messages"][0] == {"role": "system", "content": "You sell tents."}


async def test_timeout_follows_the_sla_budget(fake: FakeLlm, http: httpx.AsyncClient) -> None:
    fake.delay_s = 10.0
    h = handler(fake, http, max_timeout_s=20)
    started = time.monotonic()
    with pytest.raises(HandlerError) as info:
        await h.answer(make_turn(700, "slow please"))  # ~600 ms after the safety margin
    elapsed = time.monotonic() - started
    assert info.value.retryable
    assert "timed out" in str(info.value)
    assert 0.3 < elapsed < 2.0
    assert len(fake.requests) == 1


async def test_timeout_capped_by_max_timeout(fake: FakeLlm, http: httpx.AsyncClient) -> None:
    fake.delay_s = 10.0
    h = handler(fake, http, max_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(HandlerError):
        await h.answer(make_turn(60_000, "slow"))
    assert time.monotonic() - started < 1.5
    assert h.timeout_for(make_turn(60_000, "x")) == 0.3


async def test_budget_nearly_spent_hands_off_without_a_request(
    fake: FakeLlm, http: httpx.AsyncClient
) -> None:
    h = handler(fake, http, min_budget_ms=1500)
    reply = await h.answer(make_turn(1000, "hello?"))
    assert reply.handoff and reply.reason == "sla budget nearly spent" and reply.content is None
    assert fake.requests == []


async def test_customer_asking_for_a_human_skips_the_model(
    fake: FakeLlm, http: httpx.AsyncClient
) -> None:
    reply = await handler(fake, http).answer(make_turn(10_000, "I want a real person"))
    assert reply.handoff and reply.content
    assert fake.requests == []


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_server_errors_and_throttling_are_retryable(
    fake: FakeLlm, http: httpx.AsyncClient, status: int
) -> None:
    fake.status = status
    with pytest.raises(HandlerError) as info:
        await handler(fake, http).answer(make_turn(10_000, "hi"))
    assert info.value.retryable and str(status) in str(info.value)
    # Only a 429 says "too many requests": the adaptive controller backs off on those.
    assert info.value.throttled is (status == 429)
    assert info.value.retry_after_s == (3.0 if status == 429 else None)


async def test_the_pipelines_meter_counts_calls_and_429s(
    fake: FakeLlm, http: httpx.AsyncClient
) -> None:
    """What the reply pipeline wraps every broker call in (sluice.broker.meter): an
    answer, a 429 and a 500 are three calls, two failed, one throttled."""
    meter = BrokerMeter()
    metered = MeteredHandler(handler(fake, http), meter)
    assert (await metered.answer(make_turn(10_000, "hi"))).content
    for status in (429, 500):
        fake.status = status
        with pytest.raises(HandlerError):
            await metered.answer(make_turn(10_000, "hi"))
    tally = meter.take()
    assert (tally.calls, tally.errors, tally.throttled) == (3, 2, 1)
    assert tally.latency_ms > 0


async def test_bad_key_is_not_retryable_and_never_leaks(
    fake: FakeLlm, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-wrong-key-abcdef123456"
    h = LlmHandler(fake.base_url, "m", wrong, None, http=http)
    caplog.set_level("DEBUG")
    with pytest.raises(HandlerError) as info:
        await h.answer(make_turn(10_000, "hi"))
    assert not info.value.retryable and "401" in str(info.value)
    assert wrong not in str(info.value) and "abcdef123456" not in str(info.value)
    assert wrong not in caplog.text and wrong not in repr(h)


async def test_empty_completion_is_retryable(fake: FakeLlm, http: httpx.AsyncClient) -> None:
    fake.content = "   "
    with pytest.raises(HandlerError) as info:
        await handler(fake, http).answer(make_turn(10_000, "hi"))
    assert info.value.retryable and "empty" in str(info.value)


async def test_unreachable_endpoint_is_retryable(http: httpx.AsyncClient) -> None:
    h = LlmHandler("http://127.0.0.1:9/v1", "m", API_KEY, None, http=http, min_budget_ms=0)
    with pytest.raises(HandlerError) as info:
        await h.answer(make_turn(5_000, "hi"))
    assert info.value.retryable


async def test_built_from_settings(fake: FakeLlm) -> None:
    settings = load_handler_settings(
        {"LLM_BASE_URL": fake.base_url + "/", "LLM_MODEL": "gpt-env", "LLM_API_KEY": API_KEY}
    )
    h = get_handler("llm", settings)
    assert isinstance(h, LlmHandler)
    try:
        assert (await h.answer(make_turn(10_000, "hi"))).content
    finally:
        await h.aclose()
    assert fake.requests[0]["model"] == "gpt-env"


async def test_a_long_key_echoed_across_the_excerpts_end_never_leaks(
    fake: FakeLlm, http: httpx.AsyncClient
) -> None:
    """OpenAI project keys are ~164 characters: echoed in an error body, the key runs past
    the 200-character excerpt. Cut before it is scrubbed, neither the whole key nor its last
    8 characters matched and the first ~140 characters went out in the error (and from there
    into logs, the breaker's reason, its event and the dashboard)."""
    wrong = "sk-proj-" + "".join(f"{n:02d}" for n in range(78))  # 164 characters
    h = LlmHandler(fake.base_url, "m", wrong, None, http=http)
    with pytest.raises(HandlerError) as info:
        await h.answer(make_turn(10_000, "hi"))
    assert "401" in str(info.value)
    assert wrong[:24] not in str(info.value) and "sk-proj-0001" not in str(info.value)
