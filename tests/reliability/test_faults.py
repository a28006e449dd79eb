"""Reliability scenarios: Sluice's Redis link and Chatwoot break while traffic flows.

Every scenario checks one invariant: every webhook that got a 2xx ends as exactly one
reply at the fake Chatwoot (or a dead letter with its reason); per-conversation order
holds; no reply is posted twice. Sluice (API/intake and worker) talks to Redis through a
:class:`~sluice.testing.FaultProxy`; the test's own checks use Redis directly.

Each scenario runs with both of Chatwoot's receivers (``chatwoot_mode``, ids ``account`` and
``bot``). An account webhook is sent once: a delivery that fails is gone, so a Redis outage
must not cost a single 2xx (the intake's spool answers for Redis). An agent-bot delivery
that fails for good opens its conversation for humans: the accounting counts those
conversations' messages as left to humans by Chatwoot, never as lost.

Run with ``make test-slow`` or ``.venv/bin/pytest -m slow tests/reliability -q -s``;
docs/reliability.md has the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sluice.chatwoot.payloads import human_assignee
from sluice.loadtest import LoadConfig, run_system_with_simulator
from sluice.queue.queue import Queue
from sluice.service.runtime import Runtime
from sluice.settings.config import load_settings
from sluice.simulator import ChatwootSimulator, Mode
from sluice.simulator.engine import BOT_FAILURE_ACTIVITY
from sluice.testing import FaultProxy

from ..e2e.test_chatwoot_e2e import ACCOUNT, burst_then_question, check_conversations
from ..integration.conftest import delete_queue_keys

pytestmark = pytest.mark.slow

MODE_IDS: dict[str, str] = {"account_webhook": "account", "agent_bot": "bot"}  # figure lines

# Every scenario runs twice (account webhook and agent bot): the phases are shorter than
# when it ran once (outage 30 s, 10 s of traffic after a fault) to keep `make test-slow`
# near 10 minutes. 20 s is still four leases (5 s) and twice the pool's socket timeout.
OUTAGE_S = 20.0  # how long Redis is unreachable in scenario (a)
AFTER_FAULT_S = 5.0  # traffic goes on this long after Redis returns, in (a) and (g)
RESUME_LIMIT_S = 5.0  # after Redis returns, intake and replies resume within this
SETTLE_TIMEOUT_S = 90.0  # every accepted message answered (or dead) within this
CONVERSATIONS = 50
DROP_EVERY_S = 1.0  # scenario (b): cut every Redis connection this often
LATENCY_MS = 20.0
STALL_S = 12.0  # scenario (g): longer than the pool's 10 s socket timeout and the lease

# The SLA-budget handoff (docs/chatwoot.md) hands a turn to a human when less than
# SLUICE_HANDOFF_BUDGET_MS of the SLA budget is left; a 10 s outage spends the 10 s budget
# of every waiting message, and the conversation then goes silent by design. These
# scenarios test transport faults, not that policy: give the budget room.
ENV = {"SLA_WARNING_THRESHOLD": "60000", "SLA_CRITICAL_THRESHOLD": "120000"}


@dataclass
class Figures:
    """What one scenario counted."""

    sent: int = 0
    accepted: int = 0  # webhook answered 2xx (on some attempt)
    replied: int = 0  # accepted and covered by exactly one reply
    replies_posted: int = 0
    dead: int = 0
    handed_off: int = 0  # by Sluice: a handoff, or a turn skipped because a human has it
    # Agent-bot mode: Chatwoot opens a pending conversation for humans when the bot's
    # delivery of a message fails for good (docs/simulator.md, rule 2b).
    opened_by_chatwoot: int = 0  # 2xx, left to humans: Chatwoot had opened the conversation
    failed_to_humans: int = 0  # no 2xx; Chatwoot opened the conversation or it was open
    conversations_opened: int = 0  # opened by Chatwoot after a failed bot delivery
    lost: int = 0
    duplicates: int = 0
    order_violations: int = 0
    problems: list[str] = field(default_factory=list)
    timings: dict[str, float | None] = field(default_factory=dict)
    dead_reasons: dict[str, int] = field(default_factory=dict)

    def line(self, name: str) -> str:
        timing = " ".join(
            f"{k}={'-' if v is None else f'{v:.2f}s'}" for k, v in self.timings.items()
        )
        return (
            f"[{name}] sent={self.sent} accepted_2xx={self.accepted} replied={self.replied} "
            f"replies_posted={self.replies_posted} dead={self.dead} "
            f"handed_off={self.handed_off} opened_by_chatwoot={self.opened_by_chatwoot} "
            f"not_2xx={self.sent - self.accepted} failed_to_humans={self.failed_to_humans} "
            f"conversations_opened={self.conversations_opened} lost={self.lost} "
            f"duplicates={self.duplicates} order_violations={self.order_violations} "
            f"{timing} dead_reasons={self.dead_reasons}"
        )


def _marker(reply: dict[str, Any]) -> tuple[int, int] | None:
    marker = (reply.get("content_attributes") or {}).get("sluice_reply_id")
    if not isinstance(marker, str) or not marker.startswith("sluice-"):
        return None
    parts = marker.removeprefix("sluice-").split("-")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def accepted_messages(sim: ChatwootSimulator) -> dict[int, bool]:
    """message id -> whether its webhook got a 2xx (any attempt, any duplicate)."""
    return customer_deliveries(sim)[0]


def customer_deliveries(sim: ChatwootSimulator) -> tuple[dict[int, bool], dict[int, set[str]]]:
    """For the customers' messages: message id -> whether its webhook got a 2xx (any
    attempt, any duplicate), and message id -> what Chatwoot did after its failed
    deliveries (``Delivery.effect``: ``opened``, ``none (not pending)``, ``logged``...)."""
    log = sim.webhooks.log
    if log.maxlen is not None and len(log) >= log.maxlen:
        # The oldest deliveries were dropped: their 2xx would go uncounted, silently.
        raise AssertionError(f"the simulator's webhook log is full ({log.maxlen}); raise it")
    accepted: dict[int, bool] = {}
    effects: dict[int, set[str]] = {}
    for delivery in list(log):
        payload = delivery.payload
        if delivery.event != "message_created" or payload.get("message_type") != "incoming":
            continue
        message_id = int(payload["id"])
        ok = any(isinstance(a, int) and 200 <= a < 300 for a in delivery.attempts)
        accepted[message_id] = accepted.get(message_id, False) or ok
        if not ok and delivery.effect is not None:
            effects.setdefault(message_id, set()).add(delivery.effect)
    return accepted, effects


def failed_attempts(sim: ChatwootSimulator) -> dict[str, int]:
    """What the attempts of customer-message deliveries that never got a 2xx met (status
    codes and errors), for the figure lines."""
    seen: Counter[str] = Counter()
    for delivery in list(sim.webhooks.log):
        if delivery.event != "message_created" or delivery.payload.get("message_type") != (
            "incoming"
        ):
            continue
        if not any(isinstance(a, int) and 200 <= a < 300 for a in delivery.attempts):
            seen.update(str(a) for a in delivery.attempts)
    return dict(seen)


def opened_after_bot_failure(sim: ChatwootSimulator, conversation: int) -> int | None:
    """The id of the activity message with which Chatwoot opened the conversation after a
    failed agent-bot delivery (the first, if several), or None: messages after it reached a
    conversation that humans had."""
    for message in sim.messages(ACCOUNT, conversation):
        if message.get("message_type") in (2, "activity") and (
            message.get("content") == BOT_FAILURE_ACTIVITY
        ):
            return int(message["id"])
    return None


async def account_for(
    sim: ChatwootSimulator, queue: Queue, conversations: list[int]
) -> tuple[Figures, dict[int, str]]:
    """Count outcomes of every message; returns the figures and the accepted messages that
    are not settled yet (no reply, not dead, not handed off), each with what it waits for:
    ``not enqueued`` (in the intake's spool until Redis takes it) or ``not answered``.

    A message a human has is handed off: its turn was handed off or skipped, or it was
    never enqueued because its conversation is open and assigned to a person (the intake
    acknowledges such messages and leaves them to the human).

    Agent-bot mode: a message whose delivery failed is Chatwoot's to show to humans when
    Chatwoot opened its conversation for it, or found it open (``failed_to_humans``); an
    accepted message is left to humans by Chatwoot (``opened_by_chatwoot``) when it came
    after Chatwoot opened the conversation and the intake left it alone, or when its turn
    was skipped because of that opening. Any other accepted message without a reply, a dead
    letter or a handoff is lost once the scenario has settled (:func:`settle`)."""
    figures = Figures()
    accepted, failure_effects = customer_deliveries(sim)
    unsettled: dict[int, str] = {}
    for conversation in conversations:
        opened_at = opened_after_bot_failure(sim, conversation)
        figures.conversations_opened += opened_at is not None
        state = sim.conversation(ACCOUNT, conversation)
        is_open = state["status"] == "open"
        human = is_open and human_assignee(state) is not None
        ranges = [r for r in map(_marker, sim.replies(ACCOUNT, conversation)) if r]
        figures.replies_posted += len(ranges)
        for earlier, later in itertools.pairwise(ranges):
            if later[0] <= earlier[1]:
                figures.order_violations += 1
                figures.problems.append(f"conversation {conversation}: {earlier} then {later}")
        for message in sim.messages(ACCOUNT, conversation):
            if message.get("message_type") not in (0, "incoming"):
                continue
            figures.sent += 1
            message_id = int(message["id"])
            if not accepted.get(message_id):
                effects = failure_effects.get(message_id, set())
                if "opened" in effects or ("none (not pending)" in effects and is_open):
                    figures.failed_to_humans += 1
                continue
            figures.accepted += 1
            found = await queue.find_by_message_id(f"cw-{message_id}")
            if found is None:
                if opened_at is not None and message_id > opened_at:
                    figures.opened_by_chatwoot += 1  # the intake left it to the humans
                elif human:
                    figures.handed_off += 1  # the intake left it to the assigned human
                else:
                    unsettled[message_id] = "not enqueued"  # still spooled, or lost
                continue
            job_id = int(found)
            covering = sum(1 for first, last in ranges if first <= job_id <= last)
            if covering == 1:
                figures.replied += 1
                continue
            if covering > 1:
                figures.duplicates += covering - 1
                figures.problems.append(f"message {message_id} (job {job_id}): {covering} replies")
                continue
            job = await queue.get_job(found)
            if job is not None and job.state == "dead":
                figures.dead += 1
                reason = (job.error or "no reason recorded")[:60]
                figures.dead_reasons[reason] = figures.dead_reasons.get(reason, 0) + 1
            elif job is not None and "skipped" in job.hops and opened_at is not None:
                figures.opened_by_chatwoot += 1  # Chatwoot opened it before the turn ran
            elif job is not None and ("handed_off" in job.hops or "skipped" in job.hops):
                figures.handed_off += 1
            else:
                unsettled[message_id] = "not answered"
    return figures, unsettled


async def settle(
    sim: ChatwootSimulator, queue: Queue, conversations: list[int], limit_s: float
) -> tuple[Figures, float]:
    """Wait until every accepted message is answered, dead or handed off; the final figures
    (unsettled ones counted as lost) and how long it took."""
    started = time.monotonic()
    deadline = started + limit_s
    while True:
        figures, unsettled = await account_for(sim, queue, conversations)
        if not unsettled or time.monotonic() > deadline:
            break
        # Woken by the next Chatwoot API call (a reply, a handoff); a dead letter touches
        # only Redis, which the bound covers.
        with contextlib.suppress(TimeoutError):
            await sim.wait_for_activity(timeout=0.5)
    if unsettled:
        figures.lost += len(unsettled)
        for what in sorted(set(unsettled.values())):
            ids = sorted(m for m, w in unsettled.items() if w == what)
            figures.problems.append(f"2xx but {what} after {limit_s:.0f} s: {ids[:20]}")
    return figures, time.monotonic() - started


def first_reply_after(sim: ChatwootSimulator, conversations: list[int], at: float) -> float | None:
    """Seconds from ``at`` (epoch) to the first reply Chatwoot received after it."""
    return min(
        (
            float(r["received_at"]) - at
            for c in conversations
            for r in sim.replies(ACCOUNT, c)
            if float(r["received_at"]) >= at
        ),
        default=None,
    )


def assert_invariant(figures: Figures, mode: Mode | None = None) -> None:
    """Nothing lost, nothing twice, in order; every 2xx is a reply, a dead letter with its
    reason, or (agent-bot mode) left to humans because Chatwoot opened the conversation
    after a failed delivery. No SLA handoff: these scenarios give the budget room. ``mode``
    "account_webhook" also checks that nothing was opened (account webhooks never open)."""
    assert figures.lost == 0, figures.problems
    assert figures.duplicates == 0, figures.problems
    assert figures.order_violations == 0, figures.problems
    assert figures.accepted == (
        figures.replied + figures.dead + figures.handed_off + figures.opened_by_chatwoot
    )
    assert figures.handed_off == 0, "SLA handoffs should be off in these scenarios"
    assert all(reason != "no reason recorded" for reason in figures.dead_reasons)
    if mode == "account_webhook":
        assert figures.conversations_opened == figures.opened_by_chatwoot == 0
        assert figures.failed_to_humans == 0


def assert_intake_lost_nothing(figures: Figures, mode: Mode) -> None:
    """A Redis outage costs no webhook: the intake's spool answers 2xx for Redis. Account
    webhooks are sent once and never retried, so every message must have had its 2xx; an
    agent-bot delivery that failed is not lost either, as long as Chatwoot gave it to humans
    (it opened the conversation or found it open)."""
    if mode == "account_webhook":
        assert figures.accepted == figures.sent, (
            f"{figures.sent - figures.accepted} account webhooks without a 2xx are lost"
        )
    else:
        assert figures.accepted + figures.failed_to_humans == figures.sent, figures.problems


SPOOL_REPLAYED = "sluice_intake_spool_replayed_total"


async def spool_replayed(api_url: str) -> int:
    """How many webhooks the API's intake spool has replayed into the queue (its /metrics;
    the tests' API has no admin token and is reached on loopback)."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{api_url}/metrics")
    response.raise_for_status()
    total = 0.0
    for line in response.text.splitlines():
        if line.startswith(SPOOL_REPLAYED):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


@pytest.fixture
async def cleanup(redis_client: aioredis.Redis, queue_name: str) -> Any:
    yield
    await delete_queue_keys(redis_client, queue_name)


@pytest.fixture
async def proxy(redis_url: str) -> Any:
    target = urlsplit(redis_url)
    fault_proxy = FaultProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await fault_proxy.start()
    try:
        yield fault_proxy
    finally:
        await fault_proxy.stop()


def proxied_url(redis_url: str, proxy: FaultProxy) -> str:
    path = urlsplit(redis_url).path or "/0"
    return f"redis://{proxy.url_host}{path}"


# Every delivery of a run is accounted for (accepted_messages): far more than the load
# test's default log.
WEBHOOK_LOG_SIZE = 1_000_000


async def run_through(
    proxy: FaultProxy, redis_url: str, queue_name: str, cfg: LoadConfig, body: Any
) -> dict[str, Any]:
    """The in-process harness (simulator in ``cfg.mode``, API, worker) with Sluice's Redis
    link through ``proxy``."""
    url = proxied_url(redis_url, proxy)
    settings = load_settings({"REDIS_URL": url, "SLUICE_QUEUE": queue_name, **ENV})
    return await run_system_with_simulator(
        settings,
        url,
        cfg,
        body,
        queue=queue_name,
        extra_env=ENV,
        webhook_log_size=WEBHOOK_LOG_SIZE,
    )


@dataclass
class Sent:
    message_id: int
    sent_at: float
    returned_at: float


async def keep_writing(
    sim: ChatwootSimulator,
    conversation: int,
    stop: asyncio.Event,
    log: list[Sent],
    rng: random.Random,
) -> None:
    """A customer who writes a line every 0.5-1.5 s and does not wait for answers."""
    n = 0
    while not stop.is_set():
        n += 1
        sent_at = time.time()
        message = await sim.customer_message(ACCOUNT, conversation, f"line {n}: any news?")
        log.append(Sent(int(message["id"]), sent_at, time.time()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(0.5, 1.5))


async def start_writers(
    sim: ChatwootSimulator, count: int, stop: asyncio.Event, log: list[Sent], seed: int
) -> tuple[list[int], list[asyncio.Task[None]]]:
    """``count`` new conversations, each with a customer who keeps writing (keep_writing)
    until ``stop``; each customer has its own random stream, derived from ``seed``."""
    conversations = [await sim.create_conversation(ACCOUNT) for _ in range(count)]
    rng = random.Random(seed)
    tasks = [
        asyncio.create_task(keep_writing(sim, c, stop, log, random.Random(rng.random())))
        for c in conversations
    ]
    return conversations, tasks


@pytest.mark.usefixtures("cleanup")
async def test_redis_unreachable_during_traffic(
    redis_url: str,
    redis_client: aioredis.Redis,
    queue_name: str,
    proxy: FaultProxy,
    chatwoot_mode: Mode,
) -> None:
    """(a) Redis unreachable for OUTAGE_S while 50 customers keep writing. The intake
    spools what Redis cannot take and answers 2xx: no webhook is lost, in either mode."""
    cfg = LoadConfig(broker_latency_ms=50, mode=chatwoot_mode)
    direct = Queue(queue_name, redis=redis_client)

    async def body(sim: ChatwootSimulator, runtime: Runtime, api_url: str) -> dict[str, Any]:
        stop = asyncio.Event()
        log: list[Sent] = []
        conversations, customers = await start_writers(sim, CONVERSATIONS, stop, log, 7)
        await asyncio.sleep(5)  # steady traffic first
        down_at = time.time()
        await proxy.refuse(True)
        cut = await proxy.drop()
        await asyncio.sleep(OUTAGE_S)
        await proxy.refuse(False)
        up_at = time.time()
        await asyncio.sleep(AFTER_FAULT_S)  # traffic goes on after Redis returns
        stop.set()
        await asyncio.gather(*customers)
        await sim.flush(timeout=60)
        figures, settle_s = await settle(sim, direct, conversations, SETTLE_TIMEOUT_S)

        accepted = accepted_messages(sim)
        during = [s for s in log if down_at <= s.sent_at < up_at]
        not_accepted_during = sum(1 for s in during if not accepted.get(s.message_id))
        spooled = await spool_replayed(api_url)
        first_reply = first_reply_after(sim, conversations, up_at)
        figures.timings = {
            "slowest_customer_write_during_outage": max(
                (s.returned_at - s.sent_at for s in during), default=None
            ),
            "first_reply_after_return": first_reply,
            "backlog_settled_after_traffic": settle_s,
        }
        print(
            "\n"
            + figures.line(f"redis-unreachable-{MODE_IDS[chatwoot_mode]}")
            + f" outage={OUTAGE_S}s connections_cut={cut} written_during_outage={len(during)}"
            f" not_accepted_during_outage={not_accepted_during} spooled={spooled}"
            f" failed_attempts={failed_attempts(sim)} webhooks={sim.stats()['webhooks']}"
        )
        assert_invariant(figures, chatwoot_mode)
        assert_intake_lost_nothing(figures, chatwoot_mode)
        assert len(during) > 0 and spooled >= len(during), "the outage should have spooled"
        assert first_reply is not None and first_reply <= RESUME_LIMIT_S
        return {}

    await run_through(proxy, redis_url, queue_name, cfg, body)


@pytest.mark.usefixtures("cleanup")
async def test_latency_and_dropped_redis_connections(
    redis_url: str,
    redis_client: aioredis.Redis,
    queue_name: str,
    proxy: FaultProxy,
    chatwoot_mode: Mode,
) -> None:
    """(b) +20 ms each way on every Redis byte, and every connection cut every second."""
    cfg = LoadConfig(broker_latency_ms=20, mode=chatwoot_mode)
    direct = Queue(queue_name, redis=redis_client)
    proxy.set_latency(LATENCY_MS)

    async def body(sim: ChatwootSimulator, runtime: Runtime, api_url: str) -> dict[str, Any]:
        conversations = [await sim.create_conversation(ACCOUNT) for _ in range(CONVERSATIONS)]
        cuts: list[int] = []

        async def cutter() -> None:
            while True:
                await asyncio.sleep(DROP_EVERY_S)
                cuts.append(await proxy.drop())

        chaos = asyncio.create_task(cutter())
        started = time.monotonic()
        try:
            await asyncio.gather(*(burst_then_question(sim, c) for c in conversations))
        finally:
            chaos.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chaos
        traffic_s = time.monotonic() - started
        await sim.flush()
        figures, settle_s = await settle(sim, direct, conversations, SETTLE_TIMEOUT_S)
        figures.timings = {"traffic": traffic_s, "settle": settle_s}
        print(
            "\n"
            + figures.line(f"latency+drops-{MODE_IDS[chatwoot_mode]}")
            + f" drops={len(cuts)} connections_cut={sum(cuts)} webhooks={sim.stats()['webhooks']}"
        )
        assert_invariant(figures, chatwoot_mode)
        check_conversations(sim, conversations)
        assert sum(cuts) > 0
        return {}

    await run_through(proxy, redis_url, queue_name, cfg, body)


@pytest.mark.usefixtures("cleanup")
async def test_stalled_redis_reads(
    redis_url: str,
    redis_client: aioredis.Redis,
    queue_name: str,
    proxy: FaultProxy,
    chatwoot_mode: Mode,
) -> None:
    """(g) Every Redis connection stalls for STALL_S (open, no byte moves; what was sent
    is delivered afterwards, in order) while 50 customers write: commands time out on the
    client but may still run on the server later, leases expire mid-turn and are recovered,
    acknowledgements arrive late. Nothing may be lost or answered twice; the intake spools
    what Redis does not take in time, so every webhook gets its 2xx."""
    cfg = LoadConfig(broker_latency_ms=50, mode=chatwoot_mode)
    direct = Queue(queue_name, redis=redis_client)

    async def body(sim: ChatwootSimulator, runtime: Runtime, api_url: str) -> dict[str, Any]:
        stop = asyncio.Event()
        log: list[Sent] = []
        conversations, customers = await start_writers(sim, CONVERSATIONS, stop, log, 13)
        await asyncio.sleep(5)
        proxy.stall(True)
        await asyncio.sleep(STALL_S)
        proxy.stall(False)
        resumed_at = time.time()
        await asyncio.sleep(AFTER_FAULT_S)
        stop.set()
        await asyncio.gather(*customers)
        await sim.flush(timeout=60)
        figures, settle_s = await settle(sim, direct, conversations, SETTLE_TIMEOUT_S)
        first_reply = first_reply_after(sim, conversations, resumed_at)
        spooled = await spool_replayed(api_url)
        figures.timings = {
            "first_reply_after_stall": first_reply,
            "backlog_settled_after_traffic": settle_s,
        }
        print(
            "\n" + figures.line(f"redis-stall-{MODE_IDS[chatwoot_mode]}") + f" stall={STALL_S}s "
            f"spooled={spooled} failed_attempts={failed_attempts(sim)} "
            f"webhooks={sim.stats()['webhooks']}"
        )
        assert_invariant(figures, chatwoot_mode)
        assert_intake_lost_nothing(figures, chatwoot_mode)
        assert spooled > 0, "the stall should have sent webhooks to the spool"
        assert first_reply is not None and first_reply <= RESUME_LIMIT_S
        return {}

    await run_through(proxy, redis_url, queue_name, cfg, body)


@pytest.mark.usefixtures("cleanup")
async def test_chatwoot_429_storms_and_500s(
    redis_url: str,
    redis_client: aioredis.Redis,
    queue_name: str,
    proxy: FaultProxy,
    chatwoot_mode: Mode,
) -> None:
    """(c) Chatwoot answers 30 % of API calls 429 and 10 % 500."""
    cfg = LoadConfig(
        broker_latency_ms=20, chatwoot_429_rate=0.3, chatwoot_500_rate=0.1, mode=chatwoot_mode
    )
    direct = Queue(queue_name, redis=redis_client)

    async def body(sim: ChatwootSimulator, runtime: Runtime, api_url: str) -> dict[str, Any]:
        conversations = [await sim.create_conversation(ACCOUNT) for _ in range(CONVERSATIONS)]
        started = time.monotonic()
        await asyncio.gather(*(burst_then_question(sim, c) for c in conversations))
        traffic_s = time.monotonic() - started
        await sim.flush()
        figures, settle_s = await settle(sim, direct, conversations, SETTLE_TIMEOUT_S)
        figures.timings = {"traffic": traffic_s, "settle": settle_s}
        injected = sim.stats()["injected"]
        print(
            "\n"
            + figures.line(f"chatwoot-429-500-{MODE_IDS[chatwoot_mode]}")
            + f" injected={injected}"
        )
        assert_invariant(figures, chatwoot_mode)
        check_conversations(sim, conversations)
        assert injected["429"] > 0 and injected["500"] > 0
        return {}

    await run_through(proxy, redis_url, queue_name, cfg, body)


async def test_fault_proxy_switches(redis_url: str, proxy: FaultProxy) -> None:
    """The proxy itself: latency, drop, refuse and stall do what they say."""
    client = aioredis.Redis.from_url(
        proxied_url(redis_url, proxy), socket_connect_timeout=1, socket_timeout=1
    )
    try:
        assert await client.ping()
        proxy.set_latency(50)
        started = time.monotonic()
        await client.ping()
        assert time.monotonic() - started >= 0.1  # 50 ms each way
        proxy.set_latency(0)
        assert await proxy.drop() == 1
        with pytest.raises(RedisConnectionError):
            await client.ping()
        await proxy.refuse(True)
        with pytest.raises(RedisConnectionError, match=r"111|refused"):
            await client.ping()
        await proxy.refuse(False)
        assert await client.ping()
        proxy.stall(True)
        with pytest.raises(RedisTimeoutError):
            await client.ping()
        proxy.stall(False)
        await proxy.drop()
        assert await client.ping()
        assert proxy.stats.bytes_up > 0 and proxy.stats.bytes_down > 0
    finally:
        await client.aclose()
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("10.0.0.1", 6379)
