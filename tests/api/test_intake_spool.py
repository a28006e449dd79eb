"""The durable intake: a verified webhook is answered 2xx within 2 s whatever Redis does,
spooled to disk while Redis is down or hangs, and replayed into the queue in arrival order
once it answers; a spool that cannot be written answers 503."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from sluice.api.server import ApiServer
from sluice.queue.queue import Queue
from sluice.service.spool import Spool
from sluice.testing import FaultProxy

from ..integration.conftest import delete_queue_keys
from .conftest import start_api
from .test_intake import SECRET, fixture, signed

ANSWER_WITHIN_S = 2.0


def message(message_id: int, text: str, *, created_at: float | None = None) -> bytes:
    payload = json.loads(fixture("01"))
    payload["id"] = message_id
    payload["content"] = text
    if created_at is not None:
        payload["created_at"] = int(created_at)
    return json.dumps(payload).encode()


@dataclass
class Spooled:
    proxy: FaultProxy
    server: ApiServer
    client: httpx.AsyncClient
    queue: Queue
    spool_dir: Path

    async def post(self, body: bytes, at: float | None = None) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = await self.client.post(
            "/webhooks/chatwoot", content=body, headers=signed(body, at=at)
        )
        return response, time.monotonic() - started

    async def lane(self, key: str) -> list[int]:
        ids = await self.queue.redis.lrange(self.queue.keys.lane(key), 0, -1)
        records = [await self.queue.get_job(i.decode()) for i in ids]
        return [int(r.payload["message_id"]) for r in records if r is not None]


@pytest.fixture
async def spooled(
    redis_client: aioredis.Redis, queue_name: str, tmp_path: Path
) -> AsyncIterator[Spooled]:
    db = redis_client.connection_pool.connection_kwargs.get("db", 0)
    async with FaultProxy("127.0.0.1", 6379) as proxy:
        server, url = await start_api(
            f"redis://{proxy.url_host}/{db}",
            queue_name,
            CHATWOOT_WEBHOOK_SECRET=SECRET,
            SLUICE_DATA_DIR=str(tmp_path),
        )
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            try:
                yield Spooled(
                    proxy, server, client, Queue(queue_name, redis=redis_client), tmp_path
                )
            finally:
                await proxy.refuse(False)
                proxy.stall(False)
                await server.stop()
                await delete_queue_keys(redis_client, queue_name)


async def wait_for_lane(spooled: Spooled, key: str, count: int, within_s: float = 15) -> list[int]:
    deadline = time.monotonic() + within_s
    while len(found := await spooled.lane(key)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"lane {key} has {found}, expected {count} messages")
        await asyncio.sleep(0.05)  # the replayer writes Redis; nothing here to await
    return found


async def test_redis_down_spools_then_replays_in_arrival_order(spooled: Spooled) -> None:
    await spooled.proxy.refuse(True)
    await spooled.proxy.drop()
    for message_id, text in ((9001, "one"), (9002, "two")):
        response, took = await spooled.post(message(message_id, text))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "spooled"
        assert took < ANSWER_WITHIN_S
    await spooled.proxy.refuse(False)
    # Redis is back, but the spool is not drained yet or just drained: either way this one
    # may not overtake the two before it.
    response, _ = await spooled.post(message(9003, "three"))
    assert response.status_code == 200
    key = f"{json.loads(fixture('01'))['account']['id']}:" + str(
        json.loads(fixture("01"))["conversation"]["id"]
    )
    assert await wait_for_lane(spooled, key, 3) == [9001, 9002, 9003]


async def test_a_hanging_redis_is_answered_within_the_deadline(spooled: Spooled) -> None:
    spooled.proxy.stall(True)  # connections stay open, no byte moves: a hung Redis
    response, took = await spooled.post(message(9101, "hello?"))
    assert response.status_code == 200 and response.json()["status"] == "spooled"
    assert took < ANSWER_WITHIN_S
    spooled.proxy.stall(False)
    await spooled.proxy.drop()  # the stalled connections are dead to the client anyway


async def test_a_replayed_webhook_is_not_queued_twice(spooled: Spooled) -> None:
    body = message(9201, "once")
    await spooled.proxy.refuse(True)
    await spooled.proxy.drop()
    first, _ = await spooled.post(body)
    assert first.json()["status"] == "spooled"
    await spooled.proxy.refuse(False)
    key = "{}:{}".format(*_ids())
    await wait_for_lane(spooled, key, 1)
    again, _ = await spooled.post(body)  # the same message delivered again
    assert again.json()["status"] == "duplicate"
    assert await spooled.lane(key) == [9201]


def _ids() -> tuple[int, int]:
    payload = json.loads(fixture("01"))
    return int(payload["account"]["id"]), int(payload["conversation"]["id"])


async def test_a_spool_that_cannot_be_written_answers_503(tmp_path: Path, queue_name: str) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    server, url = await start_api(
        "redis://127.0.0.1:1/0", queue_name, SLUICE_DATA_DIR=str(spool_dir)
    )
    try:
        # The disk fills up: SQLite refuses every write from now on.
        db = sqlite3.connect(spool_dir / f"intake-spool-{queue_name}.sqlite3")
        db.execute(
            "CREATE TRIGGER full BEFORE INSERT ON spool BEGIN "
            "SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
        db.commit()
        db.close()
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            response = await client.post(
                "/webhooks/chatwoot",
                content=fixture("01"),
                headers={"Content-Type": "application/json"},
            )
        assert response.status_code == 503
        assert "spool" in response.json()["error"]
    finally:
        await server.stop()


async def test_spool_survives_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3")
    await spool.open()
    await spool.append(b'{"a":1}', {"x-chatwoot-delivery": "d-1"}, 1000.0)
    await spool.append(b'{"a":2}', {}, 2000.0)
    await spool.close()
    again = Spool(tmp_path / "s.sqlite3")
    await again.open()
    assert again.depth == 2
    rows = await again.oldest()
    assert [r.body for r in rows] == [b'{"a":1}', b'{"a":2}']
    assert rows[0].headers == {"x-chatwoot-delivery": "d-1"}
    await again.remove(rows[0])
    assert again.depth == 1 and again.stats().oldest_age_s > 0
    await again.close()
