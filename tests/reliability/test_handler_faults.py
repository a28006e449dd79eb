"""Reliability scenarios: what sits *behind* the worker fails while traffic flows.

Where tests/reliability/test_faults.py breaks Sluice's own links (Redis, Chatwoot's error
answers), these break what a turn waits on:

1. the Chatwoot API stops answering for seconds at a time (a timeout, not an error), so a
   reply may have landed while its answer never came back;
2. the AI broker's model endpoint accepts the request and never answers;
3. one message poisons its handler, every time it is tried.

Every scenario checks the invariant of test_faults: every webhook that got a 2xx ends as
exactly one reply at the fake Chatwoot, a dead letter with its reason, or (counted
explicitly, where the scenario is about it) a handoff to a human; per-conversation order
holds; no reply is posted twice. Redis is reached directly here: its faults are
test_faults' business. Each scenario runs with both of Chatwoot's receivers
(``chatwoot_mode``: ``account`` and ``bot``) and prints one figures line per run for
docs/reliability.md.

The smaller tests next to the scenarios are regression tests for what the scenarios found:
the reply-id guard believed a "not posted" that raced a held-up POST (client and retried
turn), a model timing out at its budget was handed off only after the SLA deadline, and a
poison message dragged the customer's next line into the dead letters with it (a line
written while it was retried, and a line batched with it from the start).

Run with ``.venv/bin/pytest -m slow tests/reliability/test_handler_faults.py -q -s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import json
import logging
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import sluice.service.wiring
from sluice import EnqueueRequest, Job, Queue, Worker
from sluice.api.server import ApiServer
from sluice.broker.assignment import Assigner
from sluice.broker.base import Handler, HandlerError, Reply, Turn
from sluice.broker.config import DEFAULT_BROKER, load_brokers
from sluice.broker.handlers import HandlerSettings, get_handler, load_handler_settings
from sluice.chatwoot.client import (
    MAY_STILL_LAND,
    ChatwootClient,
    ChatwootError,
    may_still_land,
)
from sluice.loadtest import LoadConfig, run_system_with_simulator
from sluice.service.conversations import Conversations
from sluice.service.pipeline import ReplyPipeline
from sluice.service.runtime import Runtime
from sluice.settings.config import load_settings
from sluice.simulator import ChatwootSimulator, Mode
from sluice.testing import FaultProxy
from sluice.worker import registry

from ..e2e.test_chatwoot_e2e import ACCOUNT, burst_then_question, check_conversations
from .test_faults import (
    ENV,
    MODE_IDS,
    WEBHOOK_LOG_SIZE,
    Figures,
    cleanup,  # noqa: F401 - a fixture, used by name
    settle,
)

# The scenarios are slow (marked one by one); the regression tests beside them are fast and
# run with every `make test`.

SETTLE_TIMEOUT_S = 40.0

# (1) Chatwoot API timeouts. Sluice's client waits 10 s per request (ChatwootClient's
# default); the scenario scales that to 1 s so that stalls of a few seconds are timeouts
# and the scenario stays short. Same code path, smaller numbers.
CLIENT_TIMEOUT_S = 1.0
# Stalls of a few seconds, each outlasting the client's timeout; one also outlasts the
# client's own retries (~4 tries, ~7 s here), so the queue retries the turn itself.
STALLS_S = (3.0, 3.0, 8.0, 3.0)
STALL_GAP_S = 1.5
TIMEOUT_CONVERSATIONS = 30

# (2) A hanging model. Small SLA thresholds on purpose (test_faults makes them large to
# keep handoffs out): here the budget running out is the subject.
SLA_BUDGET_MS = 6_000
HANDOFF_BUDGET_MS = 3_000
HANG_ENV = {
    "SLA_WARNING_THRESHOLD": str(SLA_BUDGET_MS),
    "SLA_CRITICAL_THRESHOLD": str(2 * SLA_BUDGET_MS),
    "SLUICE_HANDOFF_BUDGET_MS": str(HANDOFF_BUDGET_MS),
}
HUNG_CONVERSATIONS = 4  # fewer than the 10 worker slots: the others must keep working
STEADY_CONVERSATIONS = 8
NORMAL_REPLY_S = 1.5  # a template turn takes ~20 ms plus a few hops; 1.5 s is not normal
HUMAN_AGENT_ID = 23  # the simulator's first agent

# (3) Poison messages.
MAX_ATTEMPTS = 3
POISON_ENV = {**ENV, "SLUICE_MAX_ATTEMPTS": str(MAX_ATTEMPTS)}
CRASH_MARK = "#poison-crash"  # the handler raises an unexpected exception (a bug)
REFUSE_MARK = "#poison-refuse"  # the handler raises a retryable HandlerError every time
BYSTANDERS = 20


# --------------------------------------------------------------------------- shared helpers


async def run_system(
    redis_url: str,
    queue_name: str,
    cfg: LoadConfig,
    body: Callable[[ChatwootSimulator, Runtime, str], Awaitable[dict[str, Any]]],
    env: dict[str, str],
    chatwoot_via: Callable[[str], Awaitable[str]] | None = None,
) -> dict[str, Any]:
    """Simulator (in ``cfg.mode``), API and an in-process worker on the real Redis (no
    Redis proxy)."""
    settings = load_settings({"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name, **env})
    return await run_system_with_simulator(
        settings,
        redis_url,
        cfg,
        body,
        queue=queue_name,
        extra_env=env,
        chatwoot_via=chatwoot_via,
        webhook_log_size=WEBHOOK_LOG_SIZE,
    )


def check_invariant(figures: Figures, *, handed_off: int = 0, dead: int = 0) -> None:
    """test_faults' invariant, with the expected handoffs and dead letters made explicit.
    Every webhook gets its 2xx here (nothing breaks the intake), so in agent-bot mode
    Chatwoot never opens a conversation on its own."""
    assert figures.lost == 0, figures.problems
    assert figures.duplicates == 0, figures.problems
    assert figures.order_violations == 0, figures.problems
    assert figures.accepted == figures.sent, "every webhook should have been accepted"
    assert figures.conversations_opened == figures.opened_by_chatwoot == 0
    assert figures.accepted == figures.replied + figures.dead + figures.handed_off
    assert figures.handed_off == handed_off, figures.problems
    assert figures.dead == dead, figures.dead_reasons
    assert all(reason != "no reason recorded" for reason in figures.dead_reasons)


async def events_of(redis: aioredis.Redis, queue: Queue, kind: str) -> list[dict[str, str]]:
    """Every entry of the queue's event stream of type ``kind`` (small streams only)."""
    found = []
    for _, fields in await redis.xrange(queue.keys.events):
        entry = {k.decode(): v.decode() for k, v in fields.items()}
        if entry.get("type") == kind:
            found.append(entry)
    return found


async def wait_for_event(
    redis: aioredis.Redis, queue: Queue, kind: str, job_id: str, timeout_s: float
) -> None:
    """Block (XREAD) until the queue logs event ``kind`` for ``job_id``."""
    last = "0-0"
    async with asyncio.timeout(timeout_s):
        while True:
            batches = await redis.xread({queue.keys.events: last}, block=1000, count=100)
            for _, entries in batches:
                for entry_id, fields in entries:
                    last = entry_id
                    if fields.get(b"type") == kind.encode() and fields.get(b"job") == (
                        job_id.encode()
                    ):
                        return


async def job_of(queue: Queue, message: dict[str, Any]) -> str:
    """The job id of a customer message the intake accepted."""
    found = await queue.find_by_message_id(f"cw-{message['id']}")
    assert found is not None, f"message {message['id']} was not enqueued"
    return found


async def poll(
    check: Callable[[], bool] | Callable[[], Awaitable[bool]],
    limit_s: float,
    interval_s: float = 0.1,
) -> bool:
    """Whether ``check`` came true within ``limit_s``. Only for state with no event to
    await (the fake Chatwoot's conversations, the worker registry), as test_faults polls
    for replies."""
    deadline = time.monotonic() + limit_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval_s)


def reply_markers(sim: ChatwootSimulator, conversation: int) -> list[str]:
    return [
        str((r.get("content_attributes") or {}).get("sluice_reply_id"))
        for r in sim.replies(ACCOUNT, conversation)
    ]


class LogCounter(logging.Handler):
    """Counts records of one logger whose text contains given fragments (observation only:
    the client's retries leave no other trace)."""

    def __init__(self, logger: str, **fragments: str) -> None:
        super().__init__(logging.DEBUG)
        self.fragments = fragments
        self.counts: Counter[str] = Counter()
        self._logger = logging.getLogger(logger)
        self._level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        for name, fragment in self.fragments.items():
            if fragment in text:
                self.counts[name] += 1

    def __enter__(self) -> LogCounter:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


# --------------------------------------------------------------- (1) Chatwoot API timeouts


class ChatwootLink:
    """``chatwoot_via`` for run_system_with_simulator: a FaultProxy between Sluice and the
    fake Chatwoot (the simulator's own webhooks to Sluice go direct)."""

    def __init__(self) -> None:
        self.proxy: FaultProxy | None = None

    async def __call__(self, sim_url: str) -> str:
        target = urlsplit(sim_url)
        self.proxy = FaultProxy(target.hostname or "127.0.0.1", target.port or 80)
        await self.proxy.start()
        return f"http://{self.proxy.url_host}"

    async def close(self) -> None:
        if self.proxy is not None:
            await self.proxy.stop()


@pytest.fixture
async def chatwoot_link() -> AsyncIterator[ChatwootLink]:
    link = ChatwootLink()
    try:
        yield link
    finally:
        await link.close()


class StallOnLanding:
    """Stalls the proxy the moment the fake Chatwoot stores one of our replies, while the
    request that carried it is still being handled: the POST reached Chatwoot and it is
    its *answer* that never comes back — the case the reply-id guard exists for.

    Hooked into the simulator's ``add_message`` (synchronous, before the response exists),
    so the stall cannot miss the response."""

    def __init__(self, sim: ChatwootSimulator, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.armed = False
        self.fired = asyncio.Event()
        self.caught: list[tuple[int, str]] = []  # (conversation, sluice_reply_id)
        self._original = sim.add_message

    def add_message(self, conversation: Any, **fields: Any) -> Any:
        message = self._original(conversation, **fields)
        reply_id = (fields.get("content_attributes") or {}).get("sluice_reply_id")
        if self.armed and reply_id:
            self.armed = False
            self.proxy.stall(True)
            self.caught.append((int(conversation.display_id), str(reply_id)))
            self.fired.set()
        return message

    def arm(self) -> None:
        self.fired.clear()
        self.armed = True


@pytest.mark.slow
@pytest.mark.usefixtures("cleanup")
async def test_chatwoot_api_timeouts_never_post_twice(
    redis_url: str,
    redis_client: aioredis.Redis,
    queue_name: str,
    chatwoot_link: ChatwootLink,
    monkeypatch: pytest.MonkeyPatch,
    chatwoot_mode: Mode,
) -> None:
    """(1) Chatwoot's API stalls for a few seconds at a time (STALLS_S; connections stay
    open, no byte moves), each stall starting just as a reply lands, while 30
    conversations talk. The client's timeout must end each wait, the client and (after
    the long stall) the queue must retry, and no reply may be posted twice — neither the
    ones that landed while their answers stalled, nor the POSTs held up by the stall."""
    monkeypatch.setattr(
        sluice.service.wiring,
        "ChatwootClient",
        functools.partial(ChatwootClient, timeout_s=CLIENT_TIMEOUT_S),
    )
    cfg = LoadConfig(broker_latency_ms=20, mode=chatwoot_mode)
    direct = Queue(queue_name, redis=redis_client)

    async def body(sim: ChatwootSimulator, runtime: Runtime, api_url: str) -> dict[str, Any]:
        proxy = chatwoot_link.proxy
        assert proxy is not None
        hook = StallOnLanding(sim, proxy)
        monkeypatch.setattr(sim, "add_message", hook.add_message)
        conversations = [
            await sim.create_conversation(ACCOUNT) for _ in range(TIMEOUT_CONVERSATIONS)
        ]
        stalled_s = 0.0
        stop = asyncio.Event()

        async def talk(conversation: int) -> None:
            """burst_then_question, then one question after another until the stalls are
            over, each waiting for its answer."""
            await burst_then_question(sim, conversation)
            for n in itertools.count(1):
                if stop.is_set():
                    return
                asked = await sim.customer_message(ACCOUNT, conversation, f"Any news? ({n})")
                await sim.wait_for_reply(
                    ACCOUNT, conversation, after_message_id=asked["id"], timeout=60
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.3)

        async def stall_repeatedly(traffic: asyncio.Future[Any]) -> None:
            nonlocal stalled_s
            for stall_s in STALLS_S:
                hook.arm()
                fired = asyncio.ensure_future(hook.fired.wait())
                await asyncio.wait({fired, traffic}, return_when=asyncio.FIRST_COMPLETED)
                if not fired.done():
                    fired.cancel()
                    hook.armed = False
                    return
                began = time.monotonic()
                try:
                    await asyncio.sleep(stall_s)  # the fault's duration, not a sync point
                finally:
                    proxy.stall(False)
                stalled_s += time.monotonic() - began
                await asyncio.sleep(STALL_GAP_S)  # traffic flows between the stalls
            stop.set()

        with LogCounter(
            "sluice.chatwoot", timeouts="timed out after", landed="had landed"
        ) as log_counts:
            started = time.monotonic()
            traffic = asyncio.ensure_future(asyncio.gather(*(talk(c) for c in conversations)))
            chaos = asyncio.create_task(stall_repeatedly(traffic))
            try:
                await traffic
            finally:
                chaos.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await chaos
                proxy.stall(False)
            traffic_s = time.monotonic() - started
            await sim.flush()
            figures, settle_s = await settle(sim, direct, conversations, SETTLE_TIMEOUT_S)
        retries = len(await events_of(redis_client, direct, "retry"))
        figures.timings = {"traffic": traffic_s, "stalled": stalled_s, "settle": settle_s}
        print(
            "\n"
            + figures.line(f"chatwoot-timeouts-{MODE_IDS[chatwoot_mode]}")
            + f" stall_s={'/'.join(f'{x:g}' for x in STALLS_S)}"
            f" client_timeout_s={CLIENT_TIMEOUT_S}"
            f" conversations={TIMEOUT_CONVERSATIONS}"
            f" landed_while_answer_stalled={len(hook.caught)}"
            f" client_timeouts={log_counts.counts['timeouts']}"
            f" guard_found_landed={log_counts.counts['landed']} turn_retries={retries}"
            f" proxy_connections={proxy.stats.accepted}"
        )
        check_invariant(figures)
        assert len(hook.caught) == len(STALLS_S), "every stall should catch a reply in flight"
        for conversation, reply_id in hook.caught:
            markers = reply_markers(sim, conversation)
            assert markers.count(reply_id) == 1, (conversation, reply_id, markers)
        assert log_counts.counts["timeouts"] > 0, "the client's timeout never fired"
        assert retries > 0, "the long stall should have made the queue retry turns"
        return {}

    await run_system(redis_url, queue_name, cfg, body, ENV, chatwoot_link)


async def test_reply_guard_looks_twice_before_posting_again() -> None:
    """Regression for what scenario (1) found: a POST held up by a stalled link was
    delivered as the link healed, together with the reply-id guard's look, and the look
    came first: "not landed", so the reply was posted a second time. The guard now looks
    again after ``landing_grace_s`` before it re-sends."""
    landed: list[dict[str, Any]] = []
    held_up: list[dict[str, Any]] = []
    calls: list[str] = []

    async def chatwoot(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.method == "POST":
            body = json.loads(request.content)
            if not calls[:-1]:  # the first POST: the link stalls, the client times out
                held_up.append(body)
                raise httpx.ReadTimeout("stalled", request=request)
            landed.append({"id": 100 + len(landed), **body})
            return httpx.Response(200, json=landed[-1])
        page = {"payload": list(landed)}
        if held_up:  # the link heals: the held-up POST lands just after this first look
            landed.append({"id": 100 + len(landed), **held_up.pop()})
        return httpx.Response(200, json=page)

    http = httpx.AsyncClient(transport=httpx.MockTransport(chatwoot))
    client = ChatwootClient(
        "http://chatwoot.test", "token", http=http, backoff_base_s=0.01, landing_grace_s=0.01
    )
    try:
        sent = await client.send_message(ACCOUNT, 1, "once", reply_id="sluice-1-1")
    finally:
        await http.aclose()
    assert [m["content_attributes"]["sluice_reply_id"] for m in landed] == ["sluice-1-1"]
    assert sent["id"] == landed[0]["id"]
    assert calls == ["POST", "GET", "GET"]


async def test_a_call_that_went_unanswered_says_so_whatever_failed_last() -> None:
    """Review finding: a POST timed out (it may land later), then every look and retry
    got 429. The error the job records is the 429, and only the last error used to be
    recorded, so the retried turn made a single look and could post again. The error now
    carries MAY_STILL_LAND, and may_still_land() says yes."""

    async def chatwoot(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and not getattr(chatwoot, "posted", False):
            chatwoot.posted = True  # type: ignore[attr-defined]
            raise httpx.ReadTimeout("stalled", request=request)
        return httpx.Response(429, json={"error": "slow down"}, headers={"Retry-After": "0"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(chatwoot))
    client = ChatwootClient(
        "http://chatwoot.test", "token", http=http, backoff_base_s=0.01, landing_grace_s=0.01
    )
    try:
        with pytest.raises(ChatwootError) as caught:
            await client.send_message(ACCOUNT, 1, "once", reply_id="sluice-1-1")
    finally:
        await http.aclose()
    assert caught.value.status == 429
    recorded = f"{type(caught.value).__name__}: {caught.value}"
    assert MAY_STILL_LAND in recorded and may_still_land(recorded)


@pytest.mark.usefixtures("cleanup")
async def test_retried_turn_looks_twice_when_chatwoot_failed_it(
    redis_client: aioredis.Redis, queue_name: str
) -> None:
    """Regression, the same race one level up: a turn whose attempt failed on Chatwoot
    (the client gave up during a stall) is retried by the queue; its first look at the
    conversation races the held-up POST of the failed attempt. It looks again before
    posting, so the reply is not posted twice."""
    queue = Queue(queue_name, redis=redis_client)
    landed: list[dict[str, Any]] = []
    calls: list[str] = []
    stale: dict[str, Any] = {
        "content": "Your order ships today.",
        "message_type": "outgoing",
        "content_attributes": {"sluice_reply_id": "sluice-5-5"},
    }

    async def chatwoot(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.method == "POST":
            landed.append({"id": 200 + len(landed), **json.loads(request.content)})
            return httpx.Response(200, json=landed[-1])
        page = {"payload": list(landed)}
        if calls.count("GET") == 1:  # the failed attempt's POST lands just after this look
            landed.append({"id": 200 + len(landed), **stale})
        return httpx.Response(200, json=page)

    http = httpx.AsyncClient(transport=httpx.MockTransport(chatwoot))
    client = ChatwootClient("http://chatwoot.test", "token", http=http, landing_grace_s=0.01)
    pipeline = ReplyPipeline(
        client=client,
        conversations=Conversations(queue.redis, queue.keys),
        assigner=Assigner(queue.redis, queue.keys, [DEFAULT_BROKER]),
        handlers={"template": get_handler("template", load_handler_settings({}))},
        sla_budget_ms=60_000,
        handoff_budget_ms=0,
    )
    job = Job(
        id="5",
        key=f"{ACCOUNT}:1",
        payload={
            "account_id": ACCOUNT,
            "conversation_id": 1,
            "message_id": 11,
            "content": "Where is my order?",
            "created_at_ms": time.time() * 1000,
        },
        attempt=2,
        max_attempts=5,
        priority="normal",
        message_id="cw-11",
        token="1",
        last_error="ChatwootError: timed out after 1.00s (ReadTimeout)",
        reservations=2,
    )
    try:
        await pipeline(job)
    finally:
        await http.aclose()
    assert [m["content_attributes"]["sluice_reply_id"] for m in landed] == ["sluice-5-5"]
    assert calls == ["GET", "GET"]


@pytest.mark.parametrize(
    ("recorded", "may_land"),
    [
        ("ChatwootError: timed out after 10.00s (ReadTimeout)", True),
        ("ChatwootError: network error: RemoteProtocolError: peer closed", True),
        ("ChatwootError: Chatwoot 504: Chatwoot server error", True),
        ("ChatwootDeadlineError: deadline too close; last error: timed out after 1.00s", True),
        ("ChatwootError: Chatwoot 500: Chatwoot server error", False),  # it answered
        ("ChatwootError: Chatwoot 429: rate limited", False),
        ("HandlerError: llm request timed out after 4.97s (sla budget)", False),
        ("lease expired", True),  # the worker died or stalled mid-turn
        ("handed back mid-turn at shutdown", True),  # cancelled by a shutting-down worker
        (f"ChatwootError: Chatwoot 429: rate limited ({MAY_STILL_LAND})", True),
        (f"ChatwootError: Chatwoot 503: unavailable ({MAY_STILL_LAND})", True),
        ("HandlerError: ChatwootError: lease expired", False),
        (None, False),
    ],
)
def test_which_recorded_errors_get_a_second_look(recorded: str | None, may_land: bool) -> None:
    """Only a Chatwoot call that failed without an answer can still land late; a retried
    turn after any other failure does not pay for a second look."""
    assert may_still_land(recorded) is may_land


# ----------------------------------------------------------------- (2) the model hangs


class HangingModel:
    """An OpenAI-compatible endpoint on loopback HTTP that accepts every chat completion
    and never answers (until the test ends)."""

    def __init__(self) -> None:
        self.requests: list[float] = []
        self.release = asyncio.Event()
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> JSONResponse:
            await request.json()
            self.requests.append(time.time())
            await self.release.wait()
            return JSONResponse({"choices": [{"message": {"content": "too late"}}]})

        self.server = ApiServer(app, "127.0.0.1", 0)
        self.base_url = ""

    async def __aenter__(self) -> HangingModel:
        self.base_url = await self.server.start() + "/v1"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release.set()
        await self.server.stop()


def handoff_time(sim: ChatwootSimulator, conversation: int) -> float | None:
    """When Sluice set the conversation ``open`` (the simulator's clock, epoch seconds)."""
    path = f"/api/v1/accounts/{ACCOUNT}/conversations/{conversation}/toggle_status"
    times = [c.at for c in list(sim.calls) if c.path == path and c.status == 200]
    return min(times, default=None)


async def chat_steadily(
    sim: ChatwootSimulator,
    conversation: int,
    stop: asyncio.Event,
    turns: list[tuple[float, float]],
    baseline: tuple[int, asyncio.Event],
) -> None:
    """A customer of the template broker: asks, waits for the answer, asks again. Records
    (asked at, seconds to the reply) per turn; sets the event once all customers together
    have had the baseline's number of turns."""
    for n in itertools.count(1):
        if stop.is_set():
            return
        asked = await sim.customer_message(ACCOUNT, conversation, f"Opening hours? ({n})")
        reply = await sim.wait_for_reply(
            ACCOUNT, conversation, after_message_id=asked["id"], timeout=15
        )
        created = float(asked["created_at_epoch"])
        turns.append((created, float(reply["received_at"]) - created))
        if len(turns) >= baseline[0]:
            baseline[1].set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


@pytest.mark.slow
@pytest.mark.usefixtures("cleanup")
async def test_hanging_model_hands_off_within_the_sla_budget(
    redis_url: str,
    redis_client: aioredis.Redis,
    queue_name: str,
    monkeypatch: pytest.MonkeyPatch,
    chatwoot_mode: Mode,
) -> None:
    """(2) An llm broker whose endpoint never answers: each of its turns must become a
    handoff (human assigned, status open) within the SLA budget, while template
    conversations keep being answered at normal speed, and every slot comes back."""
    brokers_json = json.dumps(
        [
            {"name": "llm-bot", "kind": "ai", "handler": "llm"},
            {"name": "template-bot", "kind": "ai", "handler": "template"},
            {"name": "tomas", "kind": "human", "agent_id": HUMAN_AGENT_ID, "capacity": 50},
        ]
    )
    brokers = load_brokers(None, brokers_json)
    cfg = LoadConfig(broker_latency_ms=20, mode=chatwoot_mode)
    direct = Queue(queue_name, redis=redis_client)

    async with HangingModel() as model:
        monkeypatch.setenv("SLUICE_BROKERS", brokers_json)
        monkeypatch.setenv("LLM_BASE_URL", model.base_url)
        monkeypatch.setenv("LLM_MODEL", "hangs-forever")

        async def body(sim: ChatwootSimulator, runtime: Runtime, api_url: str) -> dict[str, Any]:
            assigner = Assigner(runtime.queue.redis, runtime.queue.keys, brokers)
            steady = [await sim.create_conversation(ACCOUNT) for _ in range(STEADY_CONVERSATIONS)]
            hung = [await sim.create_conversation(ACCOUNT) for _ in range(HUNG_CONVERSATIONS)]
            for conversation in steady:
                await assigner.reassign(f"{ACCOUNT}:{conversation}", "template-bot")
            for conversation in hung:
                await assigner.reassign(f"{ACCOUNT}:{conversation}", "llm-bot")

            stop = asyncio.Event()
            turns: list[tuple[float, float]] = []
            baseline_done = asyncio.Event()
            baseline_turns = (2 * STEADY_CONVERSATIONS, baseline_done)
            customers = [
                asyncio.create_task(chat_steadily(sim, c, stop, turns, baseline_turns))
                for c in steady
            ]
            # Steady traffic first (the baseline), then the model's customers write.
            await asyncio.wait_for(baseline_done.wait(), 15)
            asked = {
                c: await sim.customer_message(ACCOUNT, c, "Where is my order #4711?") for c in hung
            }
            hang_began = min(float(m["created_at_epoch"]) for m in asked.values())
            # Handoffs show in the fake Chatwoot only: poll it, bounded.
            await poll(
                lambda: all(sim.conversation(ACCOUNT, c)["status"] == "open" for c in hung),
                SLA_BUDGET_MS / 1000 + 10,
            )
            hang_ended = time.time()
            stop.set()
            await asyncio.gather(*customers)

            # Every slot comes back: nothing in flight, the worker reports idle.
            idle_from = time.monotonic()
            workers: list[dict[str, Any]] = []

            async def all_idle() -> bool:
                nonlocal workers
                counts = await runtime.queue.counts()
                inflight = await runtime.queue.redis.hlen(runtime.queue.keys.inflight)
                workers = await registry.live_workers(runtime.queue.redis, runtime.queue.keys)
                return bool(
                    counts["active"] == 0
                    and inflight == 0
                    and workers
                    and all(w["busy"] == 0 and w["utilization"] == 0 for w in workers)
                )

            idle = await poll(all_idle, 10, 0.2)
            idle_s = time.monotonic() - idle_from

            await sim.flush()
            figures, settle_s = await settle(sim, direct, steady + hung, SETTLE_TIMEOUT_S)
            handoffs = {c: handoff_time(sim, c) for c in hung}
            handoff_s = [
                (at - float(asked[c]["created_at_epoch"])) if at is not None else None
                for c, at in handoffs.items()
            ]
            baseline = [s for at, s in turns if at < hang_began]
            during = [s for at, s in turns if hang_began <= at <= hang_ended]
            finite = [s for s in handoff_s if s is not None]
            figures.timings = {
                "handoff_max": max(finite, default=None),
                "handoff_min": min(finite, default=None),
                "steady_reply_p50_before": statistics.median(baseline) if baseline else None,
                "steady_reply_p50_during_hang": statistics.median(during) if during else None,
                "steady_reply_max_during_hang": max(during, default=None),
                "slots_idle_after": idle_s,
                "settle": settle_s,
            }
            print(
                "\n"
                + figures.line(f"llm-hangs-{MODE_IDS[chatwoot_mode]}")
                + f" sla_budget_ms={SLA_BUDGET_MS} handoff_budget_ms={HANDOFF_BUDGET_MS}"
                f" hung_conversations={HUNG_CONVERSATIONS} llm_requests={len(model.requests)}"
                f" steady_turns_during_hang={len(during)}"
                f" workers_busy_after={[w['busy'] for w in workers]}"
                f" utilization_after={[w['utilization'] for w in workers]}"
            )
            check_invariant(figures, handed_off=HUNG_CONVERSATIONS)
            for conversation in hung:
                state = sim.conversation(ACCOUNT, conversation)
                assert state["status"] == "open", (conversation, state["status"])
                assignee = state["meta"]["assignee"]
                assert assignee is not None and assignee["id"] == HUMAN_AGENT_ID
                assert sim.replies(ACCOUNT, conversation) == []  # the bot stays silent
            for conversation, seconds in zip(hung, handoff_s, strict=True):
                assert seconds is not None and seconds <= SLA_BUDGET_MS / 1000, (
                    f"conversation {conversation} handed off after {seconds} s"
                )
            assert len(during) >= STEADY_CONVERSATIONS, "steady customers stalled meanwhile"
            assert max(during) <= NORMAL_REPLY_S, sorted(during)[-5:]
            assert idle, f"slots still busy: {workers}"
            return {}

        await run_system(redis_url, queue_name, cfg, body, {**ENV, **HANG_ENV})


class FailsSlowly:
    """A handler that takes 0.6 s and then fails retryably (a model timing out)."""

    name = "fails-slowly"

    def __init__(self) -> None:
        self.calls = 0

    async def answer(self, turn: Turn) -> Reply:
        self.calls += 1
        await asyncio.sleep(0.6)  # the handler's own duration, not a synchronisation
        raise HandlerError("llm request timed out (sla budget)", retryable=True)


@dataclass
class LateTurn:
    """One turn of ``handler`` whose message has waited 6.5 s of a 10 s SLA budget (3.5 s
    left, handoff budget 3 s), against a Chatwoot that only records the calls it gets."""

    pipeline: ReplyPipeline
    job: Job
    http: httpx.AsyncClient
    created_ms: float
    calls: list[tuple[str, str]]

    @classmethod
    def build(cls, queue: Queue, handler: Handler, conversation: int) -> LateTurn:
        calls: list[tuple[str, str]] = []

        async def chatwoot(request: httpx.Request) -> httpx.Response:
            calls.append((request.method, request.url.path))
            body = {"payload": {"success": True, "current_status": "open"}}
            return httpx.Response(200, json=body)

        http = httpx.AsyncClient(transport=httpx.MockTransport(chatwoot))
        pipeline = ReplyPipeline(
            client=ChatwootClient("http://chatwoot.test", "token", http=http),
            conversations=Conversations(queue.redis, queue.keys),
            assigner=Assigner(queue.redis, queue.keys, [DEFAULT_BROKER]),
            handlers={"template": handler},
            sla_budget_ms=10_000,
            handoff_budget_ms=3_000,
        )
        created = time.time() * 1000 - 6_500
        message_id = 10 + conversation
        job = Job(
            id=str(7 + conversation),
            key=f"{ACCOUNT}:{conversation}",
            payload={
                "account_id": ACCOUNT,
                "conversation_id": conversation,
                "message_id": message_id,
                "content": "Where is my order?",
                "created_at_ms": created,
            },
            attempt=1,
            max_attempts=5,
            priority="normal",
            message_id=f"cw-{message_id}",
            token="1",
        )
        return cls(pipeline, job, http, created, calls)

    async def run(self) -> None:
        try:
            await asyncio.wait_for(self.pipeline(self.job), timeout=30)  # the test's net
        finally:
            await self.http.aclose()

    def handed_off_in_time(self, conversation: int) -> None:
        assert "handed_off" in self.job.marks
        toggle = f"/api/v1/accounts/{ACCOUNT}/conversations/{conversation}/toggle_status"
        # The typing indicator around the handler is best effort, not part of the handoff.
        handoff = [c for c in self.calls if not c[1].endswith("/toggle_typing_status")]
        assert handoff == [("POST", toggle)]
        assert time.time() * 1000 - self.created_ms < 10_500  # within the SLA budget


@pytest.mark.usefixtures("cleanup")
async def test_failure_with_the_budget_nearly_spent_hands_off_at_once(
    redis_client: aioredis.Redis, queue_name: str
) -> None:
    """Regression for what scenario (2) found: a retryable failure that leaves less than
    SLUICE_HANDOFF_BUDGET_MS went back to the queue, and only its retry (after the
    backoff) handed off, past the SLA deadline. The failing attempt now hands off."""
    handler = FailsSlowly()
    turn = LateTurn.build(Queue(queue_name, redis=redis_client), handler, conversation=2)
    await turn.run()  # before the fix: HandlerError, for the queue to retry
    assert handler.calls == 1
    turn.handed_off_in_time(2)


class NeverAnswers:
    """A plug-in handler that hangs for ever (a socket read without a timeout)."""

    name = "never-answers"

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def answer(self, turn: Turn) -> Reply:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("unreachable")


@pytest.mark.usefixtures("cleanup")
async def test_a_handler_that_never_returns_is_handed_off_at_the_sla_budget(
    redis_client: aioredis.Redis, queue_name: str
) -> None:
    """Review finding: only the llm handler bounded its own time; a plug-in that hangs held
    its slot (and its conversation's lane) for ever, its heartbeat keeping the lease. The
    pipeline now cancels any handler when the turn's SLA budget is spent and hands off."""
    handler = NeverAnswers()
    turn = LateTurn.build(Queue(queue_name, redis=redis_client), handler, conversation=3)
    await turn.run()
    assert handler.started.is_set() and handler.cancelled
    turn.handed_off_in_time(3)


# ------------------------------------------------------------------ (3) poison messages


async def work_until(queue: Queue, handler: Any, event: asyncio.Event) -> None:
    """Run a batching worker with quick retries until ``event`` is set (or 10 s pass: the
    assertions after it then say what did not happen)."""
    worker = Worker(
        queue,
        handler,
        batch_size=10,
        retry_base_ms=20,
        retry_max_ms=50,
        handle_signals=False,
        idle_poll_s=0.05,
    )
    task = asyncio.create_task(worker.run())
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 10)
    finally:
        await worker.stop()
        await task


class PoisonedTemplate:
    """The template handler, except for two kinds of poisoned lines (loaded as a broker
    handler by import path, ``tests.reliability.test_handler_faults:PoisonedTemplate``,
    the way a plug-in is):

    * CRASH_MARK: an unexpected exception, as a bug in a plug-in would raise;
    * REFUSE_MARK: a retryable :class:`HandlerError` every time (a model that keeps
      failing on this input).
    """

    name = "poisoned-template"

    def __init__(self, settings: HandlerSettings) -> None:
        self.inner: Handler = get_handler("template", settings)

    async def answer(self, turn: Turn) -> Reply:
        text = turn.content_text()
        if CRASH_MARK in text:
            raise RuntimeError(f"poison: cannot parse {turn.key} line {CRASH_MARK!r}")
        if REFUSE_MARK in text:
            raise HandlerError("model refused this input", retryable=True)
        return await self.inner.answer(turn)


@pytest.mark.slow
@pytest.mark.usefixtures("cleanup")
async def test_poison_message_is_dead_lettered_and_its_conversation_moves_on(
    redis_url: str,
    redis_client: aioredis.Redis,
    queue_name: str,
    monkeypatch: pytest.MonkeyPatch,
    chatwoot_mode: Mode,
) -> None:
    """(3) A message that crashes its handler every time is dead-lettered after
    SLUICE_MAX_ATTEMPTS with its error, even when the customer writes again while it is
    being retried; that next line and the ones after are answered; 20 other conversations
    are unaffected. A message on which the AI keeps *failing* (HandlerError) is, by the
    pipeline's policy, handed to a human on its last attempt instead."""
    handler = f"{__name__}:PoisonedTemplate"
    brokers_json = json.dumps(
        [
            {"name": "bot", "kind": "ai", "handler": handler},
            {"name": "tomas", "kind": "human", "agent_id": HUMAN_AGENT_ID, "capacity": 50},
        ]
    )
    brokers = load_brokers(None, brokers_json)
    monkeypatch.setenv("SLUICE_BROKERS", brokers_json)
    cfg = LoadConfig(broker_latency_ms=20, mode=chatwoot_mode)
    direct = Queue(queue_name, redis=redis_client)

    async def body(sim: ChatwootSimulator, runtime: Runtime, api_url: str) -> dict[str, Any]:
        assigner = Assigner(runtime.queue.redis, runtime.queue.keys, brokers)
        bystanders = [await sim.create_conversation(ACCOUNT) for _ in range(BYSTANDERS)]
        crash, refuse = [await sim.create_conversation(ACCOUNT) for _ in range(2)]
        for conversation in [*bystanders, crash, refuse]:
            # New conversations would be spread over the human too (least loaded).
            await assigner.reassign(f"{ACCOUNT}:{conversation}", "bot")
        started = time.monotonic()
        traffic = asyncio.gather(*(burst_then_question(sim, c) for c in bystanders))

        # The crashing customer writes the poison, and again while it is being retried.
        poison = await sim.customer_message(ACCOUNT, crash, f"Order {CRASH_MARK} please")
        poison_job = await job_of(direct, poison)
        await wait_for_event(redis_client, direct, "retry", poison_job, 10)
        after = await sim.customer_message(ACCOUNT, crash, "Sorry, do you ship to Norway?")
        await sim.wait_for_reply(ACCOUNT, crash, after_message_id=after["id"], timeout=20)
        later = await sim.customer_message(ACCOUNT, crash, "And your opening hours?")
        await sim.wait_for_reply(ACCOUNT, crash, after_message_id=later["id"], timeout=20)
        moved_on_s = time.monotonic() - started

        # The refusing customer: handed off on the last attempt; the bot stays silent.
        refused = await sim.customer_message(ACCOUNT, refuse, f"Order {REFUSE_MARK} please")
        handed = await poll(lambda: sim.conversation(ACCOUNT, refuse)["status"] == "open", 20)
        assert handed, "the refused message was never handed off"
        follow_up = await sim.customer_message(ACCOUNT, refuse, "Hello? Anyone there?")

        await traffic
        await sim.flush()
        conversations = [*bystanders, crash, refuse]
        # The follow-up is acknowledged and left to the human without being enqueued:
        # settle counts it as handed off (its conversation is open and assigned to them).
        figures, settle_s = await settle(sim, direct, conversations, SETTLE_TIMEOUT_S)
        figures.timings = {"crash_conversation_moved_on": moved_on_s, "settle": settle_s}
        print(
            "\n"
            + figures.line(f"poison-message-{MODE_IDS[chatwoot_mode]}")
            + f" max_attempts={MAX_ATTEMPTS} turn_retries="
            f"{len(await events_of(redis_client, direct, 'retry'))}"
        )
        # One dead letter (the crash) and two handoffs (the refused line, and the next
        # line of that conversation, skipped because a human has it now).
        check_invariant(figures, handed_off=2, dead=1)
        check_conversations(sim, bystanders)
        record = await direct.get_job(poison_job)
        assert record is not None and record.state == "dead"
        assert record.attempt == MAX_ATTEMPTS
        assert record.error is not None and record.error.startswith("RuntimeError: poison")
        for message in (after, later):
            job = await direct.get_job(await job_of(direct, message))
            assert job is not None and job.state == "completed"
        assert len(sim.replies(ACCOUNT, crash)) == 2  # the two lines after the poison
        refused_job = await direct.get_job(await job_of(direct, refused))
        assert refused_job is not None and refused_job.state == "completed"
        assert "handed_off" in refused_job.hops and refused_job.attempt == MAX_ATTEMPTS
        state = sim.conversation(ACCOUNT, refuse)
        assert state["meta"]["assignee"]["id"] == HUMAN_AGENT_ID
        assert sim.replies(ACCOUNT, refuse) == []
        # The line after the handoff was acknowledged and left to the human, not queued.
        assert await direct.find_by_message_id(f"cw-{follow_up['id']}") is None
        return {}

    await run_system(redis_url, queue_name, cfg, body, POISON_ENV)


@pytest.mark.usefixtures("cleanup")
async def test_engine_poison_in_a_burst_dead_letters_only_itself(
    redis_client: aioredis.Redis, queue_name: str
) -> None:
    """(3, engine) The real Worker and Queue with bursts batched (batch_size as the reply
    pipeline runs them): a job that always raises is dead-lettered with its error after
    max attempts; the conversation's next job, which arrived while the poison was being
    retried (it used to be batched with it and buried with it), is not batched with the
    retried poison (a job that failed is retried alone) and is answered after it; other
    conversations are unaffected. (test_worker covers a lone poison job, test_properties
    poison with and without batching; this is the batched case.)"""
    queue = Queue(queue_name, redis=redis_client, max_attempts=MAX_ATTEMPTS)
    handled: list[tuple[str, list[int]]] = []
    next_line: list[str] = []
    attempts: list[int] = []
    expected = 1 + 5 * 3  # the crashing conversation's next line + 5 conversations x 3
    all_handled = asyncio.Event()

    async def handler(job: Job) -> None:
        seqs = [m.payload["seq"] for m in job.members]
        if 0 in seqs:  # seq 0 is the poison
            attempts.append(job.attempt)
            if not next_line:  # the customer writes again while the poison is retried
                next_line.append(await queue.enqueue("crash", {"seq": 1}))
            raise RuntimeError("poison: cannot parse seq 0")
        handled.append((job.key, seqs))
        if sum(len(s) for _, s in handled) >= expected:
            all_handled.set()

    started = time.monotonic()
    poison = await queue.enqueue("crash", {"seq": 0})
    await queue.enqueue_many(
        [
            EnqueueRequest(key=f"c{c}", payload={"seq": 10 + 3 * c + n})
            for c in range(5)
            for n in range(3)
        ]
    )
    await work_until(queue, handler, all_handled)
    elapsed = time.monotonic() - started

    dead = await queue.dead_letters()
    counts = await queue.counts()
    seen = Counter(seq for _, seqs in handled for seq in seqs)
    by_key: dict[str, list[int]] = {}
    for key, seqs in handled:
        by_key.setdefault(key, []).extend(seqs)
    figures = Figures(
        sent=17,
        accepted=17,
        replied=sum(seen.values()),
        replies_posted=len(handled),
        dead=len(dead),
        duplicates=sum(n - 1 for n in seen.values()),
        order_violations=sum(1 for s in by_key.values() if s != sorted(s)),
        timings={"run": elapsed},
        dead_reasons=dict(Counter((d.error or "no reason recorded")[:60] for d in dead)),
    )
    figures.lost = figures.sent - figures.replied - figures.dead
    print(
        "\n" + figures.line("engine-poison-in-burst") + f" poison_attempts={attempts}"
        f" next_line_state={(await queue.get_job(next_line[0])).state if next_line else None}"
    )
    assert [(d.id, d.error, d.attempt) for d in dead] == [
        (poison, "RuntimeError: poison: cannot parse seq 0", MAX_ATTEMPTS)
    ]
    assert attempts == [1, 2, 3]
    assert by_key["crash"] == [1], "the next line must be answered, after the poison"
    assert all(n == 1 for n in seen.values()) and len(seen) == expected
    assert figures.order_violations == 0 and figures.lost == 0
    assert (counts["waiting"], counts["active"], counts["delayed"], counts["dead"]) == (0, 0, 0, 1)


@pytest.mark.usefixtures("cleanup")
async def test_engine_poison_batched_with_an_innocent_line_dead_letters_only_itself(
    redis_client: aioredis.Redis, queue_name: str
) -> None:
    """(3, engine) Review finding: an innocent line and a poison line waiting together are
    reserved as one batch; the batch was retried whole on every attempt and, when both
    were exhausted, the innocent line was dead-lettered with the poison. A failed batch is
    now retried one job at a time: the innocent line is answered alone, the poison is
    dead-lettered after its own attempts, and the line the customer wrote meanwhile is
    answered after it."""
    queue = Queue(queue_name, redis=redis_client, max_attempts=MAX_ATTEMPTS)
    turns: list[tuple[list[int], int]] = []
    answered: list[int] = []
    written: list[str] = []
    done = asyncio.Event()

    async def handler(job: Job) -> None:
        seqs = [m.payload["seq"] for m in job.members]
        turns.append((seqs, job.attempt))
        if 1 in seqs:  # seq 1 is the poison
            if not written:  # the customer writes again while the turn is being retried
                written.append(await queue.enqueue("crash", {"seq": 2}))
            raise RuntimeError("poison: cannot parse seq 1")
        answered.extend(seqs)
        if 2 in seqs:
            done.set()

    innocent = await queue.enqueue("crash", {"seq": 0})
    poison = await queue.enqueue("crash", {"seq": 1})
    await work_until(queue, handler, done)
    assert turns == [([0, 1], 1), ([0], 2), ([1], 2), ([1], 3), ([2], 1)]
    assert answered == [0, 2]
    dead = await queue.dead_letters()
    assert [(d.id, d.error, d.attempt) for d in dead] == [
        (poison, "RuntimeError: poison: cannot parse seq 1", MAX_ATTEMPTS)
    ]
    for job_id in (innocent, *written):
        record = await queue.get_job(job_id)
        assert record is not None and record.state == "completed"
    counts = await queue.counts()
    assert (counts["waiting"], counts["active"], counts["delayed"], counts["dead"]) == (0, 0, 0, 1)


@pytest.mark.usefixtures("cleanup")
async def test_last_attempt_lease_expiry_buries_only_the_exhausted_jobs(
    redis_client: aioredis.Redis, queue_name: str
) -> None:
    """(3, engine) The same for a worker that dies on the poison's last attempt: the poison
    is dead-lettered; the line the customer wrote while it was retried was not batched
    with it (a job that failed is retried alone) and is reserved next with all its
    attempts. (tests/integration/test_batches.py covers members of a batch that survive
    the batch's last attempt, which takes `max` mixed across the batch.)"""
    queue = Queue(queue_name, redis=redis_client, max_attempts=MAX_ATTEMPTS)
    poison = await queue.enqueue("crash", {"seq": 0})
    for _ in range(MAX_ATTEMPTS - 1):
        job = (await queue.reserve(1, worker_id="w", batch=10)).jobs[0]
        assert await queue.fail(job, "boom", backoff_ms=0) == "retry"
        await queue.redis.zadd(queue.keys.delayed, {"crash": 0}, xx=True)  # due now
    later = await queue.enqueue("crash", {"seq": 1})
    job = (await queue.reserve(1, worker_id="dies", batch=10)).jobs[0]
    assert [(m.id, m.attempt) for m in job.members] == [(poison, MAX_ATTEMPTS)]
    await queue.redis.zadd(queue.keys.active, {poison: 0}, xx=True)  # its lease expired
    again = (await queue.reserve(1, worker_id="w2", batch=10)).jobs
    assert [(j.id, j.attempt) for j in again] == [(later, 1)]
    dead = await queue.dead_letters()
    assert [(d.id, d.attempt) for d in dead] == [(poison, MAX_ATTEMPTS)]
    assert dead[0].error is not None and "lease expired on the last attempt" in dead[0].error
