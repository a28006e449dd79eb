"""Single jobs on the dashboard: search, a job's timeline, and the dead letters an operator
retries or deletes.

Jobs are shown without their payload: message texts stay out of the dashboard.

Conversation search reads the lane (waiting jobs), the running job, and the most recent
completed and dead jobs (bounded scans of the ``completed`` and ``dead`` sets), so the queue
keeps no extra per-conversation index just for the dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from sluice.api.dashboard.sessions import Csrf, Session
from sluice.api.state import AppState, app_state
from sluice.queue.hops import durations
from sluice.queue.job import JobRecord

COMPLETED_SCAN = 2000
DEAD_SCAN = 500

router = APIRouter()


def _job_view(st: AppState, record: JobRecord) -> dict[str, Any]:
    derived = durations(
        record.hops, st.settings.sla_warning_threshold_ms, st.settings.sla_critical_threshold_ms
    )
    data: dict[str, Any] = record.as_dict()
    data.pop("payload", None)  # message texts stay out of the dashboard
    hops = sorted(data["hops"].items(), key=lambda kv: kv[1])
    data["timeline"] = [{"hop": name, "at": at} for name, at in hops]
    data["durations"] = derived.as_dict()
    return data


def _text_list(values: Sequence[Any]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def is_job_id(value: str) -> bool:
    """A job id: digits, or "<p>_<digits>" on partition p of a partitioned queue."""
    part, sep, seq = value.rpartition("_")
    digits = seq.isascii() and seq.isdigit() and len(seq) <= 20
    return digits and (not sep or (part.isascii() and part.isdigit() and len(part) <= 4))


def _job_id(value: str) -> str:
    """A job id from the URL, or 404 before it reaches Redis."""
    if not is_job_id(value):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
    return value


async def search_jobs(st: AppState, q: str) -> dict[str, Any]:
    """Find by job id, message id or conversation key (all that match, newest first)."""
    q = q.strip()
    if not q or len(q) > 200:
        return {"query": q, "matches": [], "conversation": None}
    # A conversation's lane and its finished jobs are on its partition (docs/partitions.md),
    # whose keys the layout knows: read it first.
    await st.queue.current_engines()
    queue, redis, keys = st.queue, st.queue.redis, st.queue.engine_of(q).keys
    found: dict[str, str] = {}  # job id -> how it matched
    if is_job_id(q) and await queue.get_job(q) is not None:
        found[q] = "job id"
    by_message = await queue.find_by_message_id(q)
    if by_message is not None:
        found.setdefault(by_message, "message id")
    conversation: dict[str, Any] | None = None
    lane = _text_list(await redis.lrange(keys.lane(q), 0, 199))
    running = await redis.hget(keys.inflight, q)
    recent_done = _text_list(await redis.zrevrange(keys.completed, 0, COMPLETED_SCAN - 1))
    recent_dead = _text_list(await redis.zrevrange(keys.dead, 0, DEAD_SCAN - 1))
    scan = recent_done + recent_dead
    pipe = redis.pipeline(transaction=False)
    for job_id in scan:
        pipe.hget(keys.job(job_id), "key")
    owners = await pipe.execute() if scan else []
    finished = [j for j, k in zip(scan, owners, strict=True) if k is not None and k.decode() == q]
    conv_ids = [*lane, *(_text_list([running]) if running else []), *finished]
    if conv_ids:
        conversation = {"key": q, "waiting": len(lane), "running": running is not None}
        for job_id in conv_ids:
            found.setdefault(job_id, "conversation")
    records = await queue._records(list(found)[:100])
    matches = [{**_job_view(st, r), "matched_by": found[r.id]} for r in records]
    matches.sort(key=lambda m: -max(m["hops"].values(), default=0))
    return {"query": q, "matches": matches, "conversation": conversation}


@router.get("/api/search")
async def search(
    request: Request, _: Session, q: Annotated[str, Query(max_length=200)]
) -> dict[str, Any]:
    return await search_jobs(app_state(request.app), q)


@router.get("/api/jobs/{job_id}")
async def job(request: Request, _: Session, job_id: str) -> dict[str, Any]:
    st = app_state(request.app)
    record = await st.queue.get_job(_job_id(job_id))
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
    return _job_view(st, record)


@router.get("/api/dead-letters")
async def dead_letters(
    request: Request, _: Session, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> dict[str, Any]:
    st = app_state(request.app)
    records = await st.queue.dead_letters(limit, 0)
    counts = await st.queue.counts()
    return {"total": counts["dead"], "items": [_job_view(st, r) for r in records]}


@router.post("/api/dead-letters/{job_id}/retry")
async def retry_dead(request: Request, _: Csrf, job_id: str) -> dict[str, str]:
    if not await app_state(request.app).queue.retry_dead(_job_id(job_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} is not a dead letter")
    return {"job_id": job_id, "state": "waiting"}


@router.post("/api/dead-letters/{job_id}/delete")
async def delete_dead(request: Request, _: Csrf, job_id: str) -> dict[str, int]:
    purged = await app_state(request.app).queue.purge_dead([_job_id(job_id)])
    if not purged:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} is not a dead letter")
    return {"purged": purged}
