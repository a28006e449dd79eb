"""Admin routes: the health document, queue controls, live settings, profile rollback,
dead letters, job timelines and alerts. Every route needs the admin token."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from sluice.api import health
from sluice.api.auth import AdminOnly
from sluice.api.state import AppState, app_state
from sluice.queue.dead_replay import DeadLetterFilter, parse_moment, replay
from sluice.queue.hops import durations
from sluice.service.profiles import switch_profile

router = APIRouter(prefix="/api/admin", dependencies=[AdminOnly], tags=["admin"])
JobId = Annotated[
    str,
    Path(pattern=r"^([0-9]{1,4}_)?[0-9]{1,20}$", description="job id (<p>_<n> on partition p)"),
]


class PausedState(BaseModel):
    paused: bool
    changed: bool


class DrainRequest(BaseModel):
    confirm: bool = Field(False, description="must be true: drain removes waiting jobs")


class DrainResult(BaseModel):
    removed: int


class LiveSettings(BaseModel):
    concurrency: int | None = Field(None, ge=1, le=10_000, description="slots per worker")
    rate_limit: int | None = Field(None, ge=0, le=1_000_000, description="jobs/s, 0 = none")


class DeadLetterReplay(BaseModel):
    """Which dead letters to requeue: every given criterion must hold."""

    model_config = ConfigDict(extra="forbid")
    error: str | None = Field(None, max_length=1000, description="text in the last error")
    since: str | None = Field(None, description="died since: 30m, 2h, 1d ago or ISO 8601")
    until: str | None = Field(None, description="died until: 30m, 2h, 1d ago or ISO 8601")
    conversation: str | None = Field(None, max_length=200, description="account:conversation")
    broker: str | None = Field(None, max_length=200, description="the broker last noted")
    all: bool = Field(False, description="must be true to select with no criterion")
    dry_run: bool = Field(True, description="count and list only (the default)")


class ProfileRequest(BaseModel):
    profile: Literal["optimized", "legacy"]


class SilenceRequest(BaseModel):
    minutes: int = Field(..., ge=1, le=7 * 24 * 60)
    by: str = Field("admin", min_length=1, max_length=100)


class AckRequest(BaseModel):
    by: str = Field("admin", min_length=1, max_length=100)


def _state(request: Request) -> AppState:
    return app_state(request.app)


@router.get("/migration-status", response_model=health.HealthDocument)
async def migration_status(request: Request, response: Response) -> health.HealthDocument:
    """The health document. Answers 503 when the status is critical, so load balancers
    and uptime checks can use it directly; the body always says why."""
    st = _state(request)
    try:
        alerts = await st.alerts()
    except (RedisError, OSError):
        alerts = []  # the document reports Redis itself as unreachable
    doc = await health.build(
        st.settings, st.queue, st.monitor, st.redis, alerts, spool=st.spool_stats()
    )
    if doc.status == "critical":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return doc


@router.get("/queue")
async def queue_counts(request: Request) -> dict[str, Any]:
    return await _state(request).queue.counts()


@router.post("/queue/pause", response_model=PausedState)
async def pause(request: Request) -> PausedState:
    return PausedState(paused=True, changed=await _state(request).queue.pause())


@router.post("/queue/resume", response_model=PausedState)
async def resume(request: Request) -> PausedState:
    return PausedState(paused=False, changed=await _state(request).queue.resume())


@router.post("/queue/drain", response_model=DrainResult)
async def drain(request: Request, body: DrainRequest) -> DrainResult:
    queue = _state(request).queue
    if not body.confirm:
        counts = await queue.counts()
        would = counts["waiting"] + counts["delayed"]
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f'drain would remove {would} waiting jobs; send {{"confirm": true}} to do it',
        )
    return DrainResult(removed=await queue.drain())


@router.get("/settings", response_model=LiveSettings)
async def get_settings(request: Request) -> LiveSettings:
    return LiveSettings(**await _state(request).queue.live_settings())


@router.put("/settings", response_model=LiveSettings)
async def put_settings(request: Request, body: LiveSettings) -> LiveSettings:
    """Set (or with null, clear) the live overrides every worker applies within 2 s."""
    queue = _state(request).queue
    await queue.set_concurrency(body.concurrency)
    await queue.set_rate_limit(body.rate_limit)
    return LiveSettings(**await queue.live_settings())


@router.post("/profile", response_model=LiveSettings)
async def set_profile(request: Request, body: ProfileRequest) -> LiveSettings:
    """Roll back to the legacy profile (3 slots, 10 jobs/s) or forward to optimized, live."""
    queue = _state(request).queue
    await switch_profile(queue, body.profile)
    return LiveSettings(**await queue.live_settings())


@router.get("/dead-letters")
async def dead_letters(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[dict[str, Any]]:
    records = await _state(request).queue.dead_letters(limit, offset)
    return [r.as_dict() for r in records]


@router.post("/dead-letters/{job_id}/retry")
async def retry_dead(request: Request, job_id: JobId) -> dict[str, str]:
    if not await _state(request).queue.retry_dead(job_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} is not a dead letter")
    return {"job_id": job_id, "state": "waiting"}


def replay_filter(body: DeadLetterReplay) -> DeadLetterFilter:
    """The filter a replay request asks for; 422 when it gives no criterion (and not
    ``all``) or a time that does not parse. Shared with the dashboard's replay panel."""
    criteria = (body.error, body.since, body.until, body.conversation, body.broker)
    if all(c is None for c in criteria) and not body.all:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "give a criterion (error, since, until, conversation, broker) or all=true",
        )
    try:
        return DeadLetterFilter(
            error=body.error,
            since_ms=parse_moment(body.since) if body.since else None,
            until_ms=parse_moment(body.until) if body.until else None,
            conversation=body.conversation,
            broker=body.broker,
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


@router.post("/dead-letters/retry")
async def replay_dead(request: Request, body: DeadLetterReplay) -> dict[str, object]:
    """Requeue the dead letters a filter selects (dry run by default: count and ids)."""
    flt = replay_filter(body)
    return (await replay(_state(request).queue, flt, dry_run=body.dry_run)).as_dict()


@router.delete("/dead-letters/{job_id}")
async def delete_dead(request: Request, job_id: JobId) -> dict[str, int]:
    purged = await _state(request).queue.purge_dead([job_id])
    if not purged:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} is not a dead letter")
    return {"purged": purged}


@router.delete("/dead-letters")
async def purge_dead(
    request: Request, confirm: Annotated[bool, Query(description="must be true")] = False
) -> dict[str, int]:
    if not confirm:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "purging every dead letter needs ?confirm=true"
        )
    return {"purged": await _state(request).queue.purge_dead()}


@router.get("/jobs/{job_id}")
async def job(request: Request, job_id: JobId) -> dict[str, Any]:
    """A job's state and hop timeline (completed jobs keep it for the retention)."""
    st = _state(request)
    record = await st.queue.get_job(job_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    derived = durations(
        record.hops, st.settings.sla_warning_threshold_ms, st.settings.sla_critical_threshold_ms
    )
    return {**record.as_dict(), "durations": derived.as_dict()}


@router.get("/intake/rejected")
async def rejected_payloads(
    request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    """Webhook payloads refused with 422 (missing ids), newest first, for inspection."""
    intake = _state(request).intake
    return await intake.rejected(limit) if intake is not None else []


@router.get("/alerts")
async def alerts(request: Request) -> dict[str, Any]:
    """Pending and firing alerts, the recent history, and the rule thresholds."""
    st = _state(request)
    return {
        "active": await st.alerts(),
        "history": await st.alert_history(),
        "rules": st.rules,
    }


@router.post("/alerts/{fingerprint}/ack")
async def ack_alert(
    request: Request,
    fingerprint: Annotated[str, Path(pattern=r"^[0-9a-f]{8,64}$")],
    body: AckRequest,
) -> dict[str, str]:
    try:
        await _state(request).request_ack(fingerprint, body.by)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    return {"fingerprint": fingerprint, "requested": "ack"}


@router.post("/alerts/{fingerprint}/silence")
async def silence_alert(
    request: Request,
    fingerprint: Annotated[str, Path(pattern=r"^[0-9a-z_]{8,64}$", description="or rule name")],
    body: SilenceRequest,
) -> dict[str, Any]:
    try:
        until = await _state(request).request_silence(fingerprint, body.minutes * 60, body.by)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    return {"fingerprint": fingerprint, "requested": "silence", "until": until}
