"""The dashboard's "Brokers" panel over HTTP (real loopback server, real Redis): the
breakers as the workers left them, and the replay of dead letters by filter: a dry run
counts and moves nothing, the replay needs the CSRF token and the confirmed count, and a
selection grown past that count is refused with the new count. /metrics shows the
breakers too."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluice.broker.breaker import CircuitBreaker, Outcome
from sluice.queue.queue import Queue
from sluice.settings.breaker import load_breaker_settings

from ..api.conftest import TOKEN
from ..integration.test_dead_replay import bury
from .test_dashboard_api import Dash


async def open_breaker(dash: Dash, broker: str = "llm-bot") -> None:
    """A worker's breaker opening on failed calls (what the pipeline records)."""
    s = load_breaker_settings({"SLUICE_BREAKER_ENABLED": "true", "SLUICE_BREAKER_MIN_CALLS": "2"})
    breaker = CircuitBreaker(dash.queue.redis, dash.queue.keys, broker, s)
    for _ in range(2):
        admission = await breaker.admit()
        await breaker.record(admission, Outcome.FAILURE, 12.0, "llm returned HTTP 503")
    assert (await breaker.admit()).verdict == "fallback"  # one turn to the fallback


async def test_breakers_show_each_broker_state_and_reason(dash: Dash) -> None:
    assert (await dash.client.get("/dashboard/api/breakers")).status_code == 401
    await dash.login()
    assert (await dash.client.get("/dashboard/api/breakers")).json()["breakers"] == []
    await open_breaker(dash)
    data = (await dash.client.get("/dashboard/api/breakers")).json()
    (view,) = data["breakers"]
    assert view["broker"] == "llm-bot" and view["state"] == "open"
    assert view["reason"].startswith("failure ratio 1.00 over 2 calls")
    assert view["until_ms"] > data["now_ms"]
    assert view["fallbacks"] == 1 and view["transitions"]["open"] == 1
    page = (await dash.client.get("/dashboard")).text
    assert 'id="breakers-table"' in page and "breakers.js" in page
    script = await dash.client.get("/dashboard/static/breakers.js")
    assert script.status_code == 200 and "api/dead-letters/replay" in script.text


async def test_replay_dry_run_counts_then_replays_the_confirmed_count(dash: Dash) -> None:
    dead = await bury(dash.queue)
    csrf = await dash.login()
    url = "/dashboard/api/dead-letters/replay"
    no_token = await dash.client.post(url, json={"error": "model down"})
    assert no_token.status_code == 403  # CSRF: the session alone is not enough
    headers = {"X-CSRF-Token": csrf}
    dry = await dash.client.post(url, json={"error": "model down"}, headers=headers)
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True and dry.json()["matched"] == 3
    assert (await dash.queue.counts())["dead"] == 4  # nothing moved
    unfiltered = await dash.client.post(url, json={}, headers=headers)
    assert unfiltered.status_code == 422  # a criterion or all=true
    bad_time = await dash.client.post(url, json={"since": "yesterday"}, headers=headers)
    assert bad_time.status_code == 422 and "not a time" in bad_time.text
    unconfirmed = await dash.client.post(
        url, json={"error": "model down", "dry_run": False}, headers=headers
    )
    assert unconfirmed.status_code == 409 and unconfirmed.json()["matched"] == 3
    too_few = await dash.client.post(
        url, json={"error": "model down", "dry_run": False, "expected": 2}, headers=headers
    )
    assert too_few.status_code == 409 and too_few.json()["matched"] == 3
    assert (await dash.queue.counts())["dead"] == 4
    done = await dash.client.post(
        url, json={"error": "model down", "dry_run": False, "expected": 3}, headers=headers
    )
    assert done.status_code == 200, done.text
    assert done.json()["requeued"] == 3 and done.json()["skipped"] == 0
    assert set(done.json()["ids"]) == {dead[0].id, dead[1].id, dead[3].id}
    counts = await dash.queue.counts()
    assert counts["dead"] == 1 and counts["waiting"] == 3


async def test_metrics_show_state_transitions_and_fallbacks(dash: Dash) -> None:
    await open_breaker(dash)
    response = await dash.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    queue = dash.queue.name

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted({"queue": queue, **labels}.items())))]

    assert value("sluice_breaker_state", broker="llm-bot") == 2.0  # open
    assert value("sluice_breaker_transitions_total", broker="llm-bot", to="open") == 1.0
    assert value("sluice_breaker_transitions_total", broker="llm-bot", to="closed") == 0.0
    assert value("sluice_breaker_fallback_total", broker="llm-bot") == 1.0


async def test_a_replay_requeues_the_letters_counted_not_one_that_died_since(
    dash: Dash, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The count is checked on a fresh selection, then the replay ran: a matching letter
    that died between the two was requeued too, more than the operator confirmed. Now the
    letters counted are the ones requeued."""
    from sluice.api.dashboard import breakers as panel
    from sluice.queue.dead_replay import DeadLetterFilter, Replay
    from sluice.queue.dead_replay import replay as real_replay

    await bury(dash.queue)
    csrf = await dash.login()

    async def one_more_dies_after_the_count(
        queue: Queue, flt: DeadLetterFilter, *, dry_run: bool
    ) -> Replay:
        result = await real_replay(queue, flt, dry_run=dry_run)
        if dry_run:
            await queue.enqueue("7:9", {"text": "hi"})
            job = (await queue.reserve(1, worker_id="w")).jobs[0]
            assert await queue.fail(job, "model down again", backoff_ms=0, retryable=False)
        return result

    monkeypatch.setattr(panel, "replay", one_more_dies_after_the_count)
    done = await dash.client.post(
        "/dashboard/api/dead-letters/replay",
        json={"error": "model down", "dry_run": False, "expected": 3},
        headers={"X-CSRF-Token": csrf},
    )
    assert done.status_code == 200, done.text
    assert done.json()["requeued"] == 3
    assert (await dash.queue.counts())["dead"] == 2  # the unmatched one, and the newcomer
