"""Bulk dead-letter replay (docs/engine.md, "Dead letters"): a filter by error text, time of
death, conversation and broker selects dead letters; a dry run counts them and moves
nothing; the replay requeues exactly the selection, and a job someone else retried in the
meantime is skipped, not requeued twice. Also over HTTP (admin API) and the CLI."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from sluice import Queue
from sluice.cli import app
from sluice.queue.dead_replay import DeadLetterFilter, parse_moment, replay, select
from sluice.queue.job import JobRecord

from ..api.conftest import TOKEN, start_api
from .conftest import delete_queue_keys

DEATHS = [  # conversation, broker, error
    ("7:1", "llm-fast", "model down: 503 from upstream"),
    ("7:2", "llm-fast", "Model Down: timeout"),
    ("7:3", "template", "chatwoot 422: content invalid"),
    ("7:1", "template", "model down: 503 from upstream"),
]


async def bury(queue: Queue) -> list[JobRecord]:
    """The dead letters of DEATHS, in the order they died (oldest first)."""
    ids = []
    for key, broker, error in DEATHS:
        await queue.enqueue(key, {"text": "hi"})
        job = (await queue.reserve(1, worker_id="w")).jobs[0]
        job.note("broker", broker)
        assert await queue.fail(job, error, backoff_ms=0, retryable=False) == "dead"
        ids.append(job.id)
    records = [await queue.get_job(job_id) for job_id in ids]
    assert all(r is not None and r.state == "dead" for r in records)
    return [r for r in records if r is not None]


def ids_of(records: list[JobRecord]) -> set[str]:
    return {r.id for r in records}


async def test_filters_select_by_error_broker_conversation_and_time(queue: Queue) -> None:
    dead = await bury(queue)
    model_down = await select(queue, DeadLetterFilter(error="MODEL DOWN"))
    assert ids_of(model_down) == {dead[0].id, dead[1].id, dead[3].id}  # case-insensitive
    both = DeadLetterFilter(error="model down", broker="llm-fast")
    assert ids_of(await select(queue, both)) == {dead[0].id, dead[1].id}
    assert ids_of(await select(queue, DeadLetterFilter(conversation="7:1"))) == {
        dead[0].id,
        dead[3].id,
    }
    # A window from the third death's own time (inclusive) to now.
    third = dead[2].hops["dead"]
    later = {r.id for r in dead if r.hops["dead"] >= third}
    assert ids_of(await select(queue, DeadLetterFilter(since_ms=third))) == later
    assert ids_of(await select(queue, DeadLetterFilter(until_ms=third))) == {
        r.id for r in dead if r.hops["dead"] <= third
    }
    assert await select(queue, DeadLetterFilter(broker="nobody")) == []


async def test_a_dry_run_moves_nothing_and_the_replay_moves_the_selection(queue: Queue) -> None:
    dead = await bury(queue)
    flt = DeadLetterFilter(error="model down", broker="llm-fast")
    dry = await replay(queue, flt, dry_run=True)
    assert set(dry.matched) == {dead[0].id, dead[1].id} and dry.requeued == []
    assert (await queue.counts())["dead"] == 4
    done = await replay(queue, flt, dry_run=False)
    assert set(done.requeued) == {dead[0].id, dead[1].id} and done.skipped == []
    counts = await queue.counts()
    assert counts["dead"] == 2 and counts["waiting"] == 2
    assert (await replay(queue, flt, dry_run=False)).matched == []  # nothing left to pick


@dataclass
class RetriedMeanwhile:
    """A queue on which another operator retries ``job_id`` between selection and replay."""

    queue: Queue
    job_id: str

    async def dead_letters(self, limit: int = 100, offset: int = 0) -> list[JobRecord]:
        return await self.queue.dead_letters(limit, offset)

    async def retry_dead(self, job_id: str) -> bool:
        if job_id == self.job_id:
            assert await self.queue.retry_dead(job_id)  # the other operator was first
        return await self.queue.retry_dead(job_id)


async def test_a_job_retried_meanwhile_is_skipped_not_requeued_twice(queue: Queue) -> None:
    dead = await bury(queue)
    racing = RetriedMeanwhile(queue, dead[0].id)
    done = await replay(racing, DeadLetterFilter(conversation="7:1"), dry_run=False)
    assert done.skipped == [dead[0].id] and done.requeued == [dead[3].id]
    assert (await queue.counts())["waiting"] == 2  # one each, not three


def test_moments_ago_and_iso() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert (
        parse_moment("30m", now=now) == datetime(2026, 12, 6, 11, 30, tzinfo=UTC).timestamp() * 1000
    )
    assert (
        parse_moment("1d", now=now) == datetime(2026, 12, 5, 12, 0, tzinfo=UTC).timestamp() * 1000
    )
    assert (
        parse_moment("2026-12-06T10:00") == datetime(2026, 12, 6, 10, tzinfo=UTC).timestamp() * 1000
    )
    with pytest.raises(ValueError, match="30m, 2h, 1d"):
        parse_moment("yesterday")
    with pytest.raises(ValueError, match="since is after until"):
        DeadLetterFilter(since_ms=2.0, until_ms=1.0)


def test_cli_dry_run_counts_and_replay_requeues(redis_url: str, queue_name: str) -> None:
    async def seed() -> None:
        async with Queue(queue_name, url=redis_url) as queue:
            await bury(queue)

    async def clean() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await delete_queue_keys(client, queue_name)
        await client.aclose()

    asyncio.run(seed())
    try:
        _cli_checks({"REDIS_URL": redis_url, "SLUICE_QUEUE": queue_name})
    finally:
        asyncio.run(clean())


def _cli_checks(env: dict[str, str]) -> None:
    runner = CliRunner()
    dry = runner.invoke(app, ["dlq", "retry", "--error", "model down", "--dry-run"], env=env)
    assert dry.exit_code == 0 and "would requeue 3 dead letters" in dry.stdout, dry.stdout
    both = runner.invoke(app, ["dlq", "retry", "5", "--error", "x"], env=env)
    assert both.exit_code == 2 and "not both" in both.output
    none = runner.invoke(app, ["dlq", "retry"], env=env)
    assert none.exit_code == 2 and "--all" in none.output
    bad = runner.invoke(app, ["dlq", "retry", "--since", "yesterday"], env=env)
    assert bad.exit_code == 2 and "ISO 8601" in bad.output
    done = runner.invoke(app, ["dlq", "retry", "--broker", "template"], env=env)
    assert done.exit_code == 0 and "requeued 2 of 2" in done.stdout, done.stdout


async def test_admin_api_replays_with_a_dry_run_by_default(redis_url: str, queue: Queue) -> None:
    await bury(queue)
    server, url = await start_api(redis_url, queue.name)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
            path = "/api/admin/dead-letters/retry"
            dry = (await client.post(path, json={"error": "model down"})).json()
            assert dry["dry_run"] and dry["matched"] == 3 and dry["requeued"] == 0
            assert (await client.post(path, json={})).status_code == 422  # no criterion
            bad = await client.post(path, json={"since": "yesterday"})
            assert bad.status_code == 422 and "ISO 8601" in bad.text
            unknown = await client.post(path, json={"eror": "typo"})
            assert unknown.status_code == 422  # an unknown field is refused, not ignored
            done = (await client.post(path, json={"broker": "template", "dry_run": False})).json()
            assert done["requeued"] == 2 and (await queue.counts())["dead"] == 2
    finally:
        await server.stop()
