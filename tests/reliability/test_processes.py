"""Reliability scenarios that kill processes: the API, and Redis itself.

Sluice runs as real processes here (:class:`~tests.reliability.system.ProcessSystem`):
``sluice serve`` and ``sluice worker`` children, the fake Chatwoot in the test process.
Each scenario checks the invariant of docs/reliability.md with the accounting of
``test_faults``: every webhook that got a 2xx is answered by exactly one reply (or is a dead
letter with its reason), in order, never twice. Each runs with both of Chatwoot's receivers
(``chatwoot_mode``: ``account`` and ``bot``); in agent-bot mode a webhook cut by a killed
API opens its conversation for humans, and its later messages are counted as left to humans
by Chatwoot.

Run with ``.venv/bin/pytest -m slow tests/reliability/test_processes.py -q -s``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sluice.loadtest import LoadConfig
from sluice.queue.queue import Queue
from sluice.simulator import Mode

from ..integration.conftest import delete_queue_keys
from ..servers import RedisServer
from .system import ProcessSystem
from .test_faults import (
    ENV,
    MODE_IDS,
    SETTLE_TIMEOUT_S,
    Sent,
    assert_intake_lost_nothing,
    assert_invariant,
    first_reply_after,
    settle,
    spool_replayed,
    start_writers,
)

pytestmark = pytest.mark.slow

CONVERSATIONS = 50
API_KILLS = 3
API_DOWN_S = 1.0  # how long the API stays dead before it is restarted
REDIS_DOWN_S = 2.0


def attempt_outcomes(system: ProcessSystem) -> Counter[str]:
    """What the webhook attempts of customer messages met: status codes and errors."""
    outcomes: Counter[str] = Counter()
    for delivery in list(system.sim.webhooks.log):
        incoming = delivery.payload.get("message_type") == "incoming"
        if delivery.event == "message_created" and incoming:
            outcomes.update(str(a) for a in delivery.attempts)
    return outcomes


@pytest.fixture
async def cleanup(redis_client: aioredis.Redis, queue_name: str) -> AsyncIterator[None]:
    yield
    await delete_queue_keys(redis_client, queue_name)


@pytest.mark.usefixtures("cleanup")
async def test_api_sigkill_while_webhooks_arrive(
    redis_url: str,
    redis_client: aioredis.Redis,
    queue_name: str,
    tmp_path: Path,
    chatwoot_mode: Mode,
) -> None:
    """(d) The API process is SIGKILLed three times while 50 customers write. A webhook
    in flight at the kill sees a transport error (Chatwoot does not retry those), never a
    2xx for a message that was not stored; every 2xx is answered exactly once. An agent
    bot's failed delivery opens its conversation: what follows there is the humans'."""
    direct = Queue(queue_name, redis=redis_client)
    async with ProcessSystem(
        redis_url, queue_name, tmp_path, env=ENV, mode=chatwoot_mode
    ) as system:
        stop = asyncio.Event()
        log: list[Sent] = []
        conversations, writers = await start_writers(system.sim, CONVERSATIONS, stop, log, 11)
        restarts: list[float] = []
        await asyncio.sleep(3)  # steady traffic first
        for _ in range(API_KILLS):
            await system.kill_api()
            await asyncio.sleep(API_DOWN_S)
            restarts.append(await system.start_api())
            await asyncio.sleep(3)
        stop.set()
        await asyncio.gather(*writers)
        await system.sim.flush(timeout=60)
        figures, settle_s = await settle(system.sim, direct, conversations, SETTLE_TIMEOUT_S)
        outcomes = attempt_outcomes(system)
        figures.timings = {
            "api_restart_max": max(restarts),
            "backlog_settled_after_traffic": settle_s,
        }
        print(
            "\n"
            + figures.line(f"api-sigkill-{MODE_IDS[chatwoot_mode]}")
            + f" kills={API_KILLS} attempts={dict(outcomes)}"
        )
        assert_invariant(figures, chatwoot_mode)
        not_2xx = sum(n for k, n in outcomes.items() if not k.startswith("2"))
        assert not_2xx > 0, "the kills should have cut some webhooks"
        if chatwoot_mode == "agent_bot":
            # A cut delivery is final for a bot too (only 429/500 are retried): Chatwoot
            # opened the conversation, or it was open already, and humans have the message.
            assert figures.sent - figures.accepted == figures.failed_to_humans > 0
            assert figures.conversations_opened > 0
        assert system.alive()["worker"]


async def active_jobs(queue: Queue, within_s: float = 5.0) -> int:
    """Jobs reserved right now, once there are some (the kill should land mid-turn)."""
    deadline = time.monotonic() + within_s
    while (active := int((await queue.counts())["active"])) == 0:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)  # a reservation is a Redis write; nothing to await
    return active


WORKER_KILLS = 4
WORKER_ENV = {**ENV, "SLUICE_LEASE_MS": "2000", "SLUICE_HEARTBEAT_MS": "500"}


@pytest.mark.usefixtures("cleanup")
async def test_worker_sigkill_repeatedly_under_load(
    redis_url: str,
    redis_client: aioredis.Redis,
    queue_name: str,
    tmp_path: Path,
    chatwoot_mode: Mode,
) -> None:
    """(h) The worker process is SIGKILLed four times, mid-job, while 50 customers write;
    each time a new one starts and recovers the expired leases (2 s here). A turn killed
    after its reply was posted must not be posted again when it is re-run."""
    direct = Queue(queue_name, redis=redis_client)
    # Turns take long enough to be killed in.
    cfg = LoadConfig(broker_latency_ms=500, mode=chatwoot_mode)
    async with ProcessSystem(redis_url, queue_name, tmp_path, cfg=cfg, env=WORKER_ENV) as system:
        stop = asyncio.Event()
        log: list[Sent] = []
        conversations, writers = await start_writers(system.sim, CONVERSATIONS, stop, log, 11)
        in_flight: list[int] = []
        await asyncio.sleep(3)
        for _ in range(WORKER_KILLS):
            in_flight.append(await active_jobs(direct))
            await system.kill_worker()
            await asyncio.sleep(0.5)
            await system.start_worker()
            await asyncio.sleep(3)
        stop.set()
        await asyncio.gather(*writers)
        await system.sim.flush(timeout=60)
        figures, settle_s = await settle(system.sim, direct, conversations, SETTLE_TIMEOUT_S)
        figures.timings = {"backlog_settled_after_traffic": settle_s}
        print(
            "\n"
            + figures.line(f"worker-sigkill-{MODE_IDS[chatwoot_mode]}")
            + f" kills={WORKER_KILLS} active_at_kill={in_flight}"
        )
        assert_invariant(figures, chatwoot_mode)
        assert figures.accepted == figures.sent, "the API stayed up: every webhook got a 2xx"
        assert sum(in_flight) > 0, "the kills should have caught jobs mid-flight"


@pytest.fixture(params=[("kill", "always"), ("term", "everysec")], ids=["sigkill", "restart"])
def redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    how, fsync = request.param
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory, fsync=fsync)
    server.start()
    server.how = how  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop("kill")


async def test_redis_restart_with_append_only_file(
    redis_server: RedisServer, queue_name: str, tmp_path: Path, chatwoot_mode: Mode
) -> None:
    """(e) Redis with appendonly is killed (SIGKILL, appendfsync always) or restarted
    (SIGTERM, appendfsync everysec) while 50 customers write; it loads its append-only file
    and Sluice carries on. Every 2xx is answered once: an acknowledged write was on disk.
    While Redis is away the intake spools: no webhook goes without its 2xx."""
    await asyncio.to_thread(redis_server.wait_ready)
    how: str = redis_server.how  # type: ignore[attr-defined]
    client = aioredis.Redis.from_url(redis_server.url)
    direct = Queue(queue_name, redis=client)
    try:
        async with ProcessSystem(
            redis_server.url, queue_name, tmp_path, env=ENV, mode=chatwoot_mode
        ) as system:
            stop = asyncio.Event()
            log: list[Sent] = []
            conversations, writers = await start_writers(system.sim, CONVERSATIONS, stop, log, 11)
            await asyncio.sleep(5)
            down_at = time.time()
            await asyncio.to_thread(redis_server.stop, how)
            await asyncio.sleep(REDIS_DOWN_S)
            redis_server.start()
            load_s = await asyncio.to_thread(redis_server.wait_ready)
            up_at = time.time()
            await asyncio.sleep(8)
            stop.set()
            await asyncio.gather(*writers)
            await system.sim.flush(timeout=60)
            figures, settle_s = await settle(system.sim, direct, conversations, SETTLE_TIMEOUT_S)
            first_reply = first_reply_after(system.sim, conversations, up_at)
            during = [s for s in log if down_at <= s.sent_at < up_at]
            spooled = await spool_replayed(system.api_url)
            figures.timings = {
                "redis_load": load_s,
                "slowest_customer_write_while_down": max(
                    (s.returned_at - s.sent_at for s in during), default=None
                ),
                "first_reply_after_return": first_reply,
                "backlog_settled_after_traffic": settle_s,
            }
            print(
                "\n"
                + figures.line(f"redis-{how}-aof-{redis_server.fsync}-{MODE_IDS[chatwoot_mode]}")
                + f" written_while_down={len(during)} spooled={spooled}"
                f" attempts={dict(attempt_outcomes(system))} alive={system.alive()}"
            )
            assert_invariant(figures, chatwoot_mode)
            assert_intake_lost_nothing(figures, chatwoot_mode)
            assert system.alive() == {"api": True, "worker": True}
            assert first_reply is not None and first_reply <= 5.0
    finally:
        await delete_queue_keys(client, queue_name)
        await client.aclose()
