"""The circuit breaker per AI broker, against the real Redis and a real loopback HTTP model
endpoint (:class:`sluice.testing.fake_llm.FakeLlm`) driven through the real ``llm`` handler.

Transitions: open on a failure ratio, open on latency over budget, a half-open probe that
succeeds closes, one that fails opens again; errors that say nothing about the endpoint are
not counted; the state is shared by every process and outlives a restart. Then the whole
reply pipeline with a worker: while the breaker is open every turn is answered once, by
the fallback, and with the switch off nothing changes from before.

No test waits out a cool-off: it is ended the way time would end it, by moving the
breaker's ``until_ms`` (the Redis clock) into the past.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from sluice import Queue, Worker
from sluice.broker.assignment import Assigner
from sluice.broker.base import CustomerLine, HandlerError, Reply, Turn
from sluice.broker.breaker import BreakerBoard, CircuitBreaker, RollingWindow, read_breakers
from sluice.broker.config import Broker
from sluice.broker.guarded import GuardedHandler
from sluice.broker.handlers import get_handler, load_handler_settings
from sluice.broker.handlers.llm import LlmHandler
from sluice.chatwoot.client import ChatwootClient
from sluice.errors import ConfigError
from sluice.service.conversations import Conversations
from sluice.service.pipeline import ReplyPipeline
from sluice.settings.breaker import BreakerSettings, load_breaker_settings
from sluice.simulator import ChatwootSimulator, SimulatorConfig
from sluice.testing.fake_llm import FakeLlm

ACCOUNT = 7
LLM_BOT = Broker(name="llm-bot", kind="ai", handler="llm")
MODEL_ANSWER = "Happy to help!"


def settings(**values: str) -> BreakerSettings:
    env = {
        "SLUICE_BREAKER_ENABLED": "true",
        "SLUICE_BREAKER_MIN_CALLS": "4",
        "SLUICE_BREAKER_FAILURE_RATIO": "0.5",
        "SLUICE_BREAKER_SLOW_MS": "0",
        "SLUICE_BREAKER_PROBES": "2",
        **values,
    }
    return load_breaker_settings(env)


def turn(n: int = 1, text: str = "Where is my order?") -> Turn:
    now = time.time() * 1000
    return Turn(
        account_id=ACCOUNT,
        conversation_id=n,
        key=f"{ACCOUNT}:{n}",
        lines=[CustomerLine(message_id=n, content=text, created_at_ms=now)],
        history=[],
        broker=LLM_BOT,
        deadline_ms=now + 30_000,
    )


async def events(redis: aioredis.Redis, queue: Queue) -> list[str]:
    """The ``breaker`` events' info, oldest first."""
    return [
        fields[b"info"].decode()
        for _, fields in await redis.xrange(queue.keys.events)
        if fields.get(b"type") == b"breaker"
    ]


async def end_cooloff(redis: aioredis.Redis, queue: Queue, broker: str = "llm-bot") -> None:
    """What the passing of the cool-off does: its end (Redis clock) is now in the past."""
    assert await redis.hget(queue.keys.breaker(broker), "state") == b"open"
    await redis.hset(queue.keys.breaker(broker), "until_ms", 0)


@dataclass
class Rig:
    model: FakeLlm
    llm: LlmHandler
    queue: Queue
    redis: aioredis.Redis

    def guarded(self, s: BreakerSettings) -> GuardedHandler:
        breaker = CircuitBreaker(self.redis, self.queue.keys, "llm-bot", s)
        fallback = get_handler("template", load_handler_settings({}))
        return GuardedHandler(self.llm, breaker, fallback)

    async def state(self) -> dict[str, str]:
        raw = await self.redis.hgetall(self.queue.keys.breaker("llm-bot"))
        return {k.decode(): v.decode() for k, v in raw.items()}


@pytest.fixture
async def rig(queue: Queue, redis_client: aioredis.Redis) -> AsyncIterator[Rig]:
    async with FakeLlm(content=MODEL_ANSWER) as model:
        llm = LlmHandler(model.base_url, "gpt-4o-mini", "sk-test", handoff_keywords=())
        try:
            yield Rig(model, llm, queue, redis_client)
        finally:
            await llm.aclose()


async def fail_calls(handler: GuardedHandler, count: int) -> list[str]:
    errors = []
    for n in range(count):
        with pytest.raises(HandlerError) as caught:
            await handler.answer(turn(n))
        errors.append(str(caught.value))
    return errors


async def test_opens_on_failure_ratio_and_routes_to_the_fallback(rig: Rig) -> None:
    handler = rig.guarded(settings())
    await rig.model.break_down("503")
    await fail_calls(handler, 3)
    assert (await rig.state()).get("state", "closed") == "closed"  # 3 calls < min_calls
    await fail_calls(handler, 1)
    state = await rig.state()
    assert state["state"] == "open"
    (opened,) = await events(rig.redis, rig.queue)
    assert opened.startswith("open: failure ratio 1.00 over 4 calls in the last 10 s")
    assert "HTTP 503" in opened and "cool-off 30 s" in opened
    requests = rig.model.requests
    reply = await handler.answer(turn(9, "Do you ship to Norway?"))
    assert rig.model.requests == requests  # the endpoint is not called while open
    assert reply.via == "template" and reply.content and not reply.handoff
    assert reply.content != MODEL_ANSWER
    assert (await rig.state())["fallback"] == "1"


async def test_the_handoff_fallback_hands_the_turn_to_a_human_and_says_why(rig: Rig) -> None:
    s = settings(SLUICE_BREAKER_FALLBACK="handoff")
    breaker = CircuitBreaker(rig.redis, rig.queue.keys, "llm-bot", s)
    handoff = get_handler("handoff", load_handler_settings({}))
    handler = GuardedHandler(rig.llm, breaker, handoff)
    await rig.model.break_down("503")
    await fail_calls(handler, 4)
    reply = await handler.answer(turn(5))
    assert reply.handoff and reply.via == "handoff" and reply.content  # "connecting you"
    assert reply.reason is not None and reply.reason.startswith("circuit breaker of llm-bot open")
    assert rig.model.requests == 4


async def test_opens_on_latency_over_budget(rig: Rig) -> None:
    rig.model.latency_s = 0.15
    handler = rig.guarded(settings(SLUICE_BREAKER_MIN_CALLS="3", SLUICE_BREAKER_SLOW_MS="100"))
    for n in range(3):
        assert (await handler.answer(turn(n))).content == MODEL_ANSWER  # slow, not failed
    assert (await rig.state())["state"] == "open"
    (opened,) = await events(rig.redis, rig.queue)
    assert opened.startswith("open: latency over budget: 3 of 3 calls in the last 10 s took 100")


async def test_successful_probes_close_the_breaker(rig: Rig) -> None:
    handler = rig.guarded(settings())
    await rig.model.break_down("503")
    await fail_calls(handler, 4)
    await rig.model.heal()
    await end_cooloff(rig.redis, rig.queue)
    assert (await handler.answer(turn(1))).content == MODEL_ANSWER  # the first probe
    assert (await rig.state())["state"] == "half_open"
    assert (await handler.answer(turn(2))).content == MODEL_ANSWER  # the second closes
    assert (await rig.state())["state"] == "closed"
    assert [e.split(":")[0] for e in await events(rig.redis, rig.queue)] == [
        "open",
        "half_open",
        "closed",
    ]
    closed = (await events(rig.redis, rig.queue))[-1]
    assert closed.startswith("closed: 2 probe call(s) succeeded")


async def test_half_open_lets_only_the_probes_through(rig: Rig) -> None:
    handler = rig.guarded(settings())
    await rig.model.break_down("hang")
    await rig.redis.hset(rig.queue.keys.breaker("llm-bot"), mapping={"state": "open", "gen": 1})
    await end_cooloff(rig.redis, rig.queue)
    probes = [asyncio.create_task(handler.answer(turn(n))) for n in range(2)]
    # Both probes reach the endpoint (and hang there).
    await asyncio.wait_for(rig.model.wait_for_requests(2), 10)
    third = await handler.answer(turn(3))  # no probe slot left: the fallback answers
    assert third.via == "template"
    assert rig.model.requests == 2
    await rig.model.heal()
    assert [(await p).content for p in probes] == [MODEL_ANSWER, MODEL_ANSWER]
    assert (await rig.state())["state"] == "closed"


async def test_a_failed_probe_opens_it_again(rig: Rig) -> None:
    handler = rig.guarded(settings())
    await rig.model.break_down("refused")
    errors = await fail_calls(handler, 4)
    assert all("ConnectError" in e for e in errors), errors  # connection refused
    await end_cooloff(rig.redis, rig.queue)
    await fail_calls(handler, 1)  # the probe fails
    state = await rig.state()
    assert state["state"] == "open" and state["t:open"] == "2"
    assert float(state["until_ms"]) > time.time() * 1000  # a new cool-off
    reopened = (await events(rig.redis, rig.queue))[-1]
    assert reopened.startswith("open: probe call failed after")
    assert "ConnectError" in reopened


async def test_errors_about_the_request_are_not_counted(rig: Rig) -> None:
    """A 400 (OpenAI: a malformed request, or content it refuses) says nothing about the
    endpoint's health: however many, the breaker stays closed."""
    handler = rig.guarded(settings(SLUICE_BREAKER_MIN_CALLS="2"))
    await rig.model.break_down("400")
    for n in range(5):
        with pytest.raises(HandlerError) as caught:
            await handler.answer(turn(n))
        assert not caught.value.retryable
    assert (await rig.state()).get("state", "closed") == "closed"
    assert await events(rig.redis, rig.queue) == []


async def test_the_state_is_shared_and_outlives_a_restart(rig: Rig) -> None:
    """Two worker processes (two breakers on the same Redis): one opens it, the other stops
    calling at once; a breaker built afresh (a restarted worker) finds it still open."""
    s = settings()
    first, second = rig.guarded(s), rig.guarded(s)
    await rig.model.break_down("503")
    await fail_calls(first, 4)
    requests = rig.model.requests
    assert (await second.answer(turn(5))).via == "template"
    restarted = rig.guarded(s)
    admission = await restarted.breaker.admit()
    assert admission.verdict == "fallback" and admission.cooloff_left_ms > 25_000
    assert rig.model.requests == requests
    (view,) = await read_breakers(rig.redis, rig.queue.keys)
    assert view.state == "open" and view.fallbacks == 2 and view.transitions["open"] == 1


def test_settings_are_validated_with_the_variable_named() -> None:
    assert not load_breaker_settings({}).enabled  # off unless switched on
    assert load_breaker_settings({"SLUICE_BREAKER_FALLBACK": "Handoff"}).fallback == "handoff"
    with pytest.raises(ConfigError, match=r"SLUICE_BREAKER_FALLBACK \('robot'\) must be"):
        load_breaker_settings({"SLUICE_BREAKER_FALLBACK": "robot"})
    with pytest.raises(
        ConfigError, match=r"SLUICE_BREAKER_FAILURE_RATIO \('1.5'\) must be at most 1"
    ):
        load_breaker_settings({"SLUICE_BREAKER_FAILURE_RATIO": "1.5"})
    with pytest.raises(ConfigError, match=r"SLUICE_BREAKER_MIN_CALLS \('0'\) must be at least 1"):
        load_breaker_settings({"SLUICE_BREAKER_MIN_CALLS": "0"})


# ------------------------------------------------------------------ the whole pipeline


@dataclass
class System:
    sim: ChatwootSimulator
    queue: Queue
    model: FakeLlm
    conversations: list[int]
    url: str

    async def say(self, conversation: int, text: str) -> int:
        """A customer line as the intake enqueues it; returns its message id."""
        message = await self.sim.customer_message(ACCOUNT, conversation, text, wait=False)
        await self.queue.enqueue(
            f"{ACCOUNT}:{conversation}",
            {
                "account_id": ACCOUNT,
                "conversation_id": conversation,
                "message_id": message["id"],
                "content": text,
                "attachments": 0,
                "created_at_ms": float(message["created_at_epoch"]) * 1000,
            },
            id=f"cw-{message['id']}",
        )
        return int(message["id"])

    async def run(
        self, pipeline: ReplyPipeline, until: Awaitable[Any], limit_s: float = 20.0
    ) -> None:
        """A real worker runs the pipeline until ``until`` is done (bounded)."""
        worker = Worker(
            self.queue,
            pipeline,
            concurrency=1,  # one turn at a time: the counts below are exact
            retry_base_ms=50,
            retry_max_ms=200,
            idle_poll_s=0.05,
            handle_signals=False,
            batch_size=10,
        )
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(until, limit_s)
        finally:
            await worker.stop()
            await task


@pytest.fixture
async def system(queue: Queue) -> AsyncIterator[System]:
    sim = ChatwootSimulator(SimulatorConfig(api_token="tok"))
    url = await sim.serve()
    async with FakeLlm(content=MODEL_ANSWER) as model:
        conversations = [await sim.create_conversation(ACCOUNT) for _ in range(6)]
        try:
            yield System(sim, queue, model, conversations, url)
        finally:
            await sim.aclose()


def build_pipeline(
    system: System, client: ChatwootClient, breakers: BreakerBoard | None
) -> ReplyPipeline:
    handler_settings = load_handler_settings(
        {"LLM_BASE_URL": system.model.base_url, "LLM_MODEL": "gpt-4o-mini"}
    )
    handlers = {name: get_handler(name, handler_settings) for name in ("llm", "handoff")}
    fallback = get_handler("template", handler_settings) if breakers else None
    queue = system.queue
    return ReplyPipeline(
        client=client,
        conversations=Conversations(queue.redis, queue.keys),
        assigner=Assigner(queue.redis, queue.keys, [LLM_BOT]),
        handlers=handlers,
        sla_budget_ms=30_000,
        handoff_budget_ms=0,
        breakers=breakers,
        fallback=fallback,
    )


def replies(system: System, conversation: int) -> list[dict[str, Any]]:
    return system.sim.replies(ACCOUNT, conversation)


async def replied(system: System, conversations: list[int], after: dict[int, int]) -> None:
    """Until each conversation has a reply after its message ``after[c]``."""
    for c in conversations:
        await system.sim.wait_for_reply(ACCOUNT, c, after_message_id=after[c], timeout=20)


async def handed_off(system: System, conversations: list[int]) -> None:
    """Until each conversation is ``open``: a handoff is an API call to the fake Chatwoot,
    so each check waits for the simulator's next answered call (bounded by the caller)."""
    while not all(system.sim.conversation(ACCOUNT, c)["status"] == "open" for c in conversations):
        await system.sim.wait_for_activity(timeout=20)


async def test_while_open_every_turn_is_answered_once_by_the_fallback(system: System) -> None:
    queue = system.queue
    s = settings(SLUICE_BREAKER_MIN_CALLS="3")
    board = BreakerBoard(queue.redis, queue.keys, [LLM_BOT], s)
    client = ChatwootClient(system.url, "tok")
    try:
        pipeline = build_pipeline(system, client, board)
        await system.model.break_down("503")
        asked = {c: await system.say(c, "Where is my order #4711?") for c in system.conversations}
        await system.run(pipeline, replied(system, system.conversations, asked))
        await system.sim.flush()
        # Three calls failed (the first turn's attempts), then the breaker opened: the
        # retry and every other turn went to the template, each posted exactly once.
        assert system.model.requests == 3
        for conversation in system.conversations:
            (reply,) = replies(system, conversation)
            assert reply["content"] != MODEL_ANSWER
        assert (await queue.counts())["dead"] == 0
        records = [await queue.get_job(str(n)) for n in range(1, 7)]
        assert all(r is not None and r.notes.get("answered_by") == "template" for r in records)
        (view,) = await read_breakers(queue.redis, queue.keys)
        assert view.state == "open" and view.fallbacks == 6
        # The adaptive controller's meter saw the model's three failed calls, not the
        # fallback's six instant answers (the meter sits inside the breaker).
        tally = pipeline.broker_meter.take()
        assert (tally.calls, tally.errors) == (3, 3)

        # The endpoint heals, the cool-off ends: the probes close it, the model answers.
        await system.model.heal()
        await end_cooloff(queue.redis, queue)
        again = system.conversations[:3]
        asked = {c: await system.say(c, "Thanks! And do you ship to Norway?") for c in again}
        await system.run(pipeline, replied(system, again, asked))
        await system.sim.flush()
        for conversation in system.conversations[:3]:
            assert replies(system, conversation)[-1]["content"] == MODEL_ANSWER
        (view,) = await read_breakers(queue.redis, queue.keys)
        assert view.state == "closed"
    finally:
        await client.aclose()


async def test_switched_off_the_endpoint_is_called_on_every_attempt(system: System) -> None:
    """Without breakers (SLUICE_BREAKER_ENABLED unset) the pipeline behaves as before: each
    turn calls the endpoint on every attempt and, on the last, is handed to a human."""
    queue = Queue(system.queue.name, redis=system.queue.redis, max_attempts=2)
    system.queue = queue
    client = ChatwootClient(system.url, "tok")
    try:
        pipeline = build_pipeline(system, client, None)
        assert pipeline.handler_for(LLM_BOT) is pipeline._handlers["llm"]  # type: ignore[index]
        await system.model.break_down("503")
        chosen = system.conversations[:3]
        for conversation in chosen:
            await system.say(conversation, "Where is my order #4711?")
        await system.run(pipeline, handed_off(system, chosen))
        assert system.model.requests == 3 * 2  # every attempt of every turn
        assert all(replies(system, c) == [] for c in chosen)
        assert await read_breakers(queue.redis, queue.keys) == []
    finally:
        await client.aclose()


def test_a_reply_without_a_fallback_keeps_via_empty() -> None:
    assert Reply("hi").via is None


def test_the_window_keeps_only_its_span_of_a_monotonic_clock() -> None:
    now = [100.0]
    window = RollingWindow(10.0, clock=lambda: now[0])
    window.add(failed=True, slow=False)
    now[0] += 6
    window.add(failed=False, slow=True)
    assert window.counts() == (2, 1, 1)
    now[0] += 5  # the first call is 11 s old now
    assert window.counts() == (1, 0, 1)
    now[0] += 10
    assert window.counts() == (0, 0, 0)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redis_unreachable_the_model_still_answers(rig: Rig) -> None:
    """The breaker's Redis is away (refused connections): the turn is not failed by the
    breaker, the model is called as if the breaker were closed."""
    down = aioredis.Redis(port=_closed_port(), socket_connect_timeout=1)
    try:
        breaker = CircuitBreaker(down, rig.queue.keys, "llm-bot", settings())
        fallback = get_handler("template", load_handler_settings({}))
        handler = GuardedHandler(rig.llm, breaker, fallback)
        reply = await handler.answer(turn(1))
        assert reply.content == MODEL_ANSWER and reply.via is None
        assert rig.model.requests == 1
        await rig.model.break_down("503")  # a failure: still raised as the handler's own
        with pytest.raises(HandlerError):
            await handler.answer(turn(2))
    finally:
        await down.aclose()


async def test_an_outcome_lost_with_redis_keeps_the_models_answer(rig: Rig) -> None:
    """Redis drops between the admission and the count: the model answered, the answer is
    returned (not lost to a retry that would call the model again)."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    handler = rig.guarded(settings())
    await rig.redis.hset(rig.queue.keys.breaker("llm-bot"), mapping={"state": "open", "gen": 1})
    await end_cooloff(rig.redis, rig.queue)

    async def unreachable(**_: Any) -> Any:
        raise RedisConnectionError("Connection refused")

    handler.breaker._scripts = {**handler.breaker._scripts, "breaker_probe_ok": unreachable}
    reply = await handler.answer(turn(1))  # a probe: its count cannot be written
    assert reply.content == MODEL_ANSWER
    assert rig.model.requests == 1


async def test_a_redis_clock_stepped_back_holds_it_open_no_longer_than_a_cooloff(
    rig: Rig,
) -> None:
    """The cool-off's end and a probe's grant are Redis clock times: after the server's
    clock went back an hour they look an hour away. The breaker brings them back to now
    (a cool-off at most), instead of falling back (or keeping a lost probe's place) for an
    hour."""
    handler = rig.guarded(settings(SLUICE_BREAKER_COOLOFF_S="30"))
    key = rig.queue.keys.breaker("llm-bot")
    hour_ahead = time.time() * 1000 + 3_600_000
    await rig.redis.hset(key, mapping={"state": "open", "gen": 1, "until_ms": hour_ahead})
    admission = await handler.breaker.admit()
    assert admission.verdict == "fallback"
    assert admission.cooloff_left_ms <= 30_000
    assert float(await rig.redis.hget(key, "until_ms")) <= time.time() * 1000 + 30_000
    # Half-open with every probe slot taken by a probe granted "an hour from now".
    await rig.redis.hset(
        key, mapping={"state": "half_open", "gen": 2, "inflight": 2, "probe_at_ms": hour_ahead}
    )
    assert (await handler.breaker.admit()).verdict == "fallback"
    assert float(await rig.redis.hget(key, "probe_at_ms")) <= time.time() * 1000 + 1_000


async def test_a_reason_never_carries_the_credentials_of_a_url(rig: Rig) -> None:
    """A plug-in AI handler's error may quote its endpoint with a password or a key in the
    query: the breaker's reason (stored in Redis, logged, an event, on the dashboard) masks
    them, as every other place that shows error text does."""
    breaker = CircuitBreaker(rig.redis, rig.queue.keys, "llm-bot", settings())
    for _ in range(4):
        breaker.window.add(failed=True, slow=False)
    error = "ConnectError: https://bot:hunter2secret@llm.example/v1?api_key=sk-live-abc123 down"
    reason = breaker.verdict(error)
    assert reason is not None and "failure ratio 1.00" in reason
    assert "hunter2secret" not in reason and "sk-live-abc123" not in reason


async def test_a_cancellation_turned_into_a_redis_error_is_not_swallowed(rig: Rig) -> None:
    """redis-py may turn a cancellation (the SLA budget's) into a ConnectionError
    (sluice.worker.types.raise_if_cancelled): the guard's "Redis away, call the model"
    must not swallow it and call the model of a turn that is being cancelled."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    handler = rig.guarded(settings())

    async def cancelled_in_flight(**_: Any) -> Any:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # the budget expires while the script call is in flight ...
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:  # ... and redis-py turns it into an error
            raise RedisConnectionError("Connection closed by server") from None

    handler.breaker._scripts = {**handler.breaker._scripts, "breaker_admit": cancelled_in_flight}
    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(handler.answer(turn(1)))
    assert rig.model.requests == 0


async def test_an_open_breaker_past_its_cooloff_reads_half_open(rig: Rig) -> None:
    """The hash changes only on a call: with no more traffic (or the breakers switched off
    while one was open) it said "open" for ever, on the dashboard and /metrics (and the
    SluiceBrokerBreakerOpen alert fired). Past its cool-off it reads as what the next call
    finds: half-open."""
    key = rig.queue.keys.breaker("llm-bot")
    await rig.redis.sadd(rig.queue.keys.breakers, "llm-bot")
    future = time.time() * 1000 + 30_000
    await rig.redis.hset(key, mapping={"state": "open", "gen": 1, "until_ms": future})
    (view,) = await read_breakers(rig.redis, rig.queue.keys)
    assert view.state == "open" and view.until_ms == future
    await rig.redis.hset(key, "until_ms", time.time() * 1000 - 1_000)
    (view,) = await read_breakers(rig.redis, rig.queue.keys)
    assert view.state == "half_open" and view.until_ms is None


async def test_a_call_cancelled_with_budget_left_is_not_counted(rig: Rig) -> None:
    """A worker stopping after its grace cancels its calls in flight with budget left: that
    says nothing about the endpoint (counted as failures, a stopping worker's calls could
    open the breaker for every worker). A call cut by the budget itself still counts."""

    class Hanging:
        """A handler whose call never returns (a hung endpoint, without its own timeout)."""

        name = "hanging"
        called = asyncio.Event()

        async def answer(self, turn: Turn) -> Reply:
            self.called.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    inner = Hanging()
    breaker = CircuitBreaker(rig.redis, rig.queue.keys, "llm-bot", settings())
    handler = GuardedHandler(inner, breaker, get_handler("template", load_handler_settings({})))
    stopping = asyncio.create_task(handler.answer(turn(1)))  # 30 s of budget
    await asyncio.wait_for(inner.called.wait(), 10)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    await asyncio.gather(*handler._background)
    assert breaker.window.counts() == (0, 0, 0)
    # The budget's own cancellation (as the pipeline's asyncio.timeout does it).
    short = dataclasses.replace(turn(2), deadline_ms=time.time() * 1000 + 200)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(short.remaining_ms() / 1000):
            await handler.answer(short)
    await asyncio.gather(*handler._background)
    assert breaker.window.counts()[:2] == (1, 1)


async def test_probes_lost_with_their_worker_are_given_again(rig: Rig) -> None:
    """Half-open with every probe slot taken by workers that died mid-probe (their outcome
    never comes): after SLUICE_BREAKER_PROBE_TIMEOUT_S the place is given again, so the
    breaker is not stuck half-open; before that, turns go to the fallback."""
    handler = rig.guarded(settings(SLUICE_BREAKER_PROBE_TIMEOUT_S="30"))
    key = rig.queue.keys.breaker("llm-bot")
    now = time.time() * 1000
    await rig.redis.hset(
        key, mapping={"state": "half_open", "gen": 3, "inflight": 2, "probe_at_ms": now - 5_000}
    )
    assert (await handler.breaker.admit()).verdict == "fallback"  # 5 s: maybe still running
    await rig.redis.hset(key, "probe_at_ms", now - 31_000)  # 31 s: lost with its worker
    assert (await handler.answer(turn(1))).content == MODEL_ANSWER  # a probe, answered
    await rig.redis.hset(key, "probe_at_ms", now - 31_000)
    assert (await handler.answer(turn(2))).content == MODEL_ANSWER
    assert (await rig.state())["state"] == "closed"  # 2 successful probes close it
