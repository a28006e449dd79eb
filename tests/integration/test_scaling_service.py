"""The scaling step against a real Redis: roll-ups in, recommendation, state and events out,
and what the API and /metrics publish of it."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from sluice.api.factory import create_app
from sluice.api.server import ApiServer
from sluice.queue.queue import Queue
from sluice.scaling.forecast import DAY_MIN
from sluice.scaling.service import Scaler, read_state
from sluice.scaling.settings import load_scaling_settings
from sluice.settings.config import load_settings

from ..api.conftest import TOKEN, start_api
from .conftest import delete_queue_keys

ON = {
    "SLUICE_SCALING_ENABLED": "true",
    "SLUICE_SCALING_MIN_WORKERS": "1",
    "SLUICE_SCALING_MAX_WORKERS": "50",
    "SLUICE_SCALING_TARGET_UTILIZATION": "0.5",
}


async def write_minutes(
    queue: Queue, first: int, arrivals: list[int], *, service_ms: int = 2000
) -> None:
    """Roll-ups as rollup.lua leaves them: every arrival also finished in ``service_ms``."""
    pipe = queue.redis.pipeline(transaction=False)
    for offset, count in enumerate(arrivals):
        key = queue.keys.mon_1m(first + offset)
        pipe.hset(key, mapping={"_rolled": 1, "enq": count, "n": count, "ps": count * service_ms})
        pipe.expire(key, 3600)
    pipe.set(queue.keys.mon_rolled_until, first + len(arrivals) - 1, ex=3600)
    await pipe.execute()


async def scaling_events(queue: Queue) -> list[dict[str, str]]:
    rows = await queue.redis.xrange(queue.keys.events)
    found = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rows]
    return [e for e in found if e["type"] == "scaling"]


def daily(minute: int) -> int:
    return round(30 + 20 * math.sin(2 * math.pi * (minute % DAY_MIN) / DAY_MIN))


async def test_each_finished_minute_gives_a_recommendation_and_a_change_an_event(
    queue: Queue,
) -> None:
    first = 29_449_440
    history = [daily(m) for m in range(first, first + 2 * DAY_MIN)]
    await write_minutes(queue, first, history)
    scaler = Scaler(queue, load_scaling_settings(ON), slots_per_process=4)
    state = await scaler.step()
    assert state is not None and state == await read_state(queue)
    assert state["forecast"]["model"] == "seasonal"
    assert state["forecast"]["history_minutes"] == 2 * DAY_MIN
    assert state["inputs"]["service_time_s"] == pytest.approx(2.0)
    assert "measured" in state["inputs"]["service_time_source"]
    # The formula on the stored figures: ceil(upper/s × 2 s / (4 slots × 0.5)).
    upper = max(p["upper"] for p in state["forecast"]["points"][:5])
    assert state["desired_workers"] == math.ceil(upper / 60 * 2.0 / (4 * 0.5) - 1e-9)
    (event,) = await scaling_events(queue)
    assert event["key"] == "desired_workers"
    assert event["info"].startswith(f"- -> {state['desired_workers']}: upper band")
    assert await scaler.step() is None  # the same minute again: nothing new

    # A burst in the next minute: the recommendation rises, with a second event.
    last = first + 2 * DAY_MIN
    await write_minutes(queue, last, [daily(last) * 6])
    burst = await scaler.step()
    assert burst is not None and burst["desired_workers"] > state["desired_workers"]
    events = await scaling_events(queue)
    assert len(events) == 2
    assert events[1]["info"].startswith(f"{state['desired_workers']} -> ")


async def test_a_fresh_install_falls_back_and_says_so(queue: Queue) -> None:
    first = 29_449_440
    await write_minutes(queue, first, [12] * 45)
    state = await Scaler(queue, load_scaling_settings(ON), slots_per_process=4).step()
    assert state is not None
    assert state["forecast"]["model"] == "recent-mean"
    assert state["forecast"]["history_minutes"] == 45
    assert "a day is needed" in state["forecast"]["notes"][0]


async def test_switched_off_nothing_is_computed_or_stored(queue: Queue) -> None:
    await write_minutes(queue, 29_449_440, [12] * 45)
    assert await Scaler(queue, load_scaling_settings({}), slots_per_process=4).step() is None
    assert await read_state(queue) is None and await scaling_events(queue) == []


@pytest.fixture
def scaling_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in ON.items():
        monkeypatch.setenv(name, value)
    yield


@pytest.fixture
async def api_url(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> AsyncIterator[str]:
    server, url = await start_api(redis_url, queue_name)
    try:
        yield url
    finally:
        await server.stop()
        await delete_queue_keys(redis_client, queue_name)


async def test_api_keda_and_metrics_publish_the_recommendation(
    scaling_on: None, api_url: str, redis_client: aioredis.Redis, queue_name: str
) -> None:
    import httpx

    queue = Queue(queue_name, redis=redis_client)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=10) as client:
        pending = await client.get("/api/admin/scaling/keda")
        assert pending.status_code == 404 and "no recommendation yet" in pending.text
        await write_minutes(queue, 29_449_440, [600] * 30)
        state = await Scaler(queue, load_scaling_settings(ON), slots_per_process=4).step()
        assert state is not None
        body = (await client.get("/api/admin/scaling")).json()
        assert body["desired_workers"] == state["desired_workers"]
        assert len(body["forecast"]["points"]) == 15 and body["age_s"] >= 0
        keda = await client.get("/api/admin/scaling/keda")
        assert keda.json() == {"desired_workers": state["desired_workers"]}
        metrics = (await client.get("/metrics")).text
        line = f'sluice_scaling_desired_workers{{queue="{queue_name}"}} '
        assert f"{line}{float(state['desired_workers'])}" in metrics
        assert 'sluice_scaling_forecast_arrivals_per_minute{bound="upper"' in metrics
        anonymous = await httpx.AsyncClient(base_url=api_url).get("/api/admin/scaling/keda")
        assert anonymous.status_code == 401


async def test_api_says_scaling_is_off(api_url: str) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=10) as client:
        body = (await client.get("/api/admin/scaling")).json()
        assert body == {
            "enabled": False,
            "desired_workers": None,
            "reason": "SLUICE_SCALING_ENABLED is false: the worker count is static",
        }
        assert (await client.get("/api/admin/scaling/keda")).status_code == 404


async def test_keda_gets_no_number_from_a_stale_recommendation(
    scaling_on: None, redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> None:
    """A state no leader refreshed for STALE_AFTER_S: KEDA gets a 404 (its fallback
    replicas), not the old number; the admin document still shows it, with its age. (The
    API is no candidate for the monitoring leader here: as the leader it would store a
    fresh state at the next finished minute, between the two requests now and then.)"""
    import json
    import time

    import httpx

    from sluice.scaling.service import STALE_AFTER_S

    queue = Queue(queue_name, redis=redis_client)
    old = time.time() - STALE_AFTER_S - 60
    await redis_client.set(
        queue.keys.scaling_state, json.dumps({"computed_at": old, "desired_workers": 1}), ex=600
    )
    settings = load_settings(
        {"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name, "SLUICE_ADMIN_TOKEN": TOKEN}
    )
    server = ApiServer(create_app(settings, redis_url, run_evaluator=False), "127.0.0.1", 0)
    url = await server.start()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
            keda = await client.get("/api/admin/scaling/keda")
            assert keda.status_code == 404 and "s old" in keda.json()["detail"]
            body = (await client.get("/api/admin/scaling")).json()
            assert body["desired_workers"] == 1 and body["age_s"] > STALE_AFTER_S
    finally:
        await server.stop()
        await delete_queue_keys(redis_client, queue_name)
