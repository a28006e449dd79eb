"""Routes of the operations dashboard.

Security model
--------------
* Login posts the admin token in a form body (never a URL); on success the server creates a
  random session id, stores ``{csrf, created}`` in Redis under
  ``<queue prefix>dash:session:<sha256(id)>`` with a TTL (the raw id exists only in the
  client's cookie), and sets it as an ``HttpOnly; SameSite=Strict`` cookie scoped to
  ``/dashboard``. Without a configured admin token (a loopback-only deployment, enforced at
  startup) the login form needs no token, but sessions and CSRF work the same way.
* Without a configured admin token every ``/dashboard`` request (pages, API, events, static
  files, login) must come from a direct loopback client: a loopback TCP peer and none of the
  proxy headers (``Forwarded``, ``X-Forwarded-*``, ``X-Real-IP``), else 403. A bind on
  127.0.0.1 behind a reverse proxy would otherwise hand a session to anyone the proxy
  relays (:func:`sluice.api.auth.require_direct_loopback`). Checking every request, not
  only the login, also shuts out a session cookie replayed through such a proxy.
* Every state-changing request needs the session cookie AND an ``X-CSRF-Token`` header equal
  to the session's CSRF token (constant-time comparison); otherwise 403 and nothing changes.
  The token reaches the page in a ``<meta>`` tag of the (``no-store``) HTML shell.
* Failed logins are counted per client address (``dash:loginfail:<addr>``, one minute);
  after 10 the login answers 429 for the rest of that minute.
* Static files are served only from ``static/`` inside this package: the requested path is
  resolved and must stay inside that directory, with a known extension; anything else is 404.

Monitoring additions
--------------------
* Queue depth history: the event stream writes one sample per 10-second monitoring bucket
  (``mon:10s:<n>``) as fields ``_qd`` (waiting + delayed), ``_age`` (oldest waiting age, ms)
  and ``_qdn`` (1). Fields starting with ``_`` are ignored by the window reader; the minute
  roll-up sums them, so a minute's mean depth is ``_qd / _qdn``. Depth is therefore recorded
  while at least one dashboard is open (other figures come from the workers themselves).
* Conversation search reads the lane (waiting jobs), the running job, and the most recent
  completed and dead jobs (bounded scans of the ``completed`` and ``dead`` sets), so no
  extra per-conversation index is kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import logging
import mimetypes
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field

from sluice.api.auth import require_direct_loopback, token_matches
from sluice.api.state import AppState, app_state
from sluice.monitor.histogram import Histogram
from sluice.monitor.windows import COARSE_S, FINE_S, combine
from sluice.monitor.windows import record_depth as sample_depth
from sluice.profiles import live_profile, switch_profile
from sluice.queue.job import JobRecord
from sluice.timing import durations

log = logging.getLogger("sluice.dashboard")

STATIC_DIR = (Path(__file__).parent / "static").resolve()
COOKIE = "sluice_dash"
COOKIE_PATH = "/dashboard"
SESSION_TTL_S = 8 * 3600
LOGIN_FAILURES_PER_MINUTE = 10
SSE_INTERVAL_S = 1.5
SSE_MAX_LIFETIME_S = 300.0  # the browser's EventSource reconnects by itself
COMPLETED_SCAN = 2000
DEAD_SCAN = 500

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".md": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE
}

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

router = APIRouter(
    prefix="/dashboard",
    include_in_schema=False,
    dependencies=[Depends(require_direct_loopback)],
)


# ------------------------------------------------------------------ sessions


def _st(request: Request) -> AppState:
    return app_state(request.app)


def _session_key(st: AppState, session_id: str) -> str:
    digest = hashlib.sha256(session_id.encode()).hexdigest()
    return f"{st.queue.keys.prefix}dash:session:{digest}"


async def _load_session(request: Request) -> dict[str, Any] | None:
    session_id = request.cookies.get(COOKIE)
    if not session_id or len(session_id) > 128:
        return None
    st = _st(request)
    raw = await st.queue.redis.get(_session_key(st, session_id))
    if raw is None:
        return None
    data: dict[str, Any] = json.loads(raw)
    return data


async def require_session(request: Request) -> dict[str, Any]:
    """The session of a JSON or event-stream request; 401 without one."""
    session = await _load_session(request)
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not logged in")
    return session


def _same_origin(request: Request) -> bool:
    """False only when the browser says the request came from another origin."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


async def require_csrf(request: Request) -> dict[str, Any]:
    """Session cookie AND a matching X-CSRF-Token header, else 403 (nothing changes)."""
    session = await _load_session(request)
    given = request.headers.get("x-csrf-token", "")
    if (
        session is None
        or not given
        or not _same_origin(request)
        or not hmac.compare_digest(str(session.get("csrf", "")).encode(), given.encode())
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or invalid CSRF token")
    return session


Session = Annotated[dict[str, Any], Depends(require_session)]
Csrf = Annotated[dict[str, Any], Depends(require_csrf)]


def _client_addr(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# ------------------------------------------------------------------ pages


def _read_static(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def _page(body: str) -> Response:
    return Response(
        body,
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-store", **_SECURITY_HEADERS},
    )


def _login_page(request: Request, error: str = "", status_code: int = 200) -> Response:
    token_required = request.app.state.admin_token is not None
    text = _read_static("login.html")
    text = text.replace("<!--error-->", html.escape(error))
    text = text.replace(
        "<!--token-->",
        (
            '<label for="token">Admin token</label>'
            '<input id="token" name="token" type="password" autocomplete="current-password" '
            "required autofocus>"
        )
        if token_required
        else '<p class="hint">No admin token is configured (loopback-only deployment).</p>',
    )
    response = _page(text)
    response.status_code = status_code
    return response


@router.get("")
@router.get("/")
async def index(request: Request) -> Response:
    session = await _load_session(request)
    if session is None:
        return RedirectResponse("/dashboard/login", status.HTTP_303_SEE_OTHER)
    text = _read_static("index.html").replace(
        "{{csrf}}", html.escape(str(session["csrf"]), quote=True)
    )
    return _page(text)


@router.get("/login")
async def login_form(request: Request) -> Response:
    if await _load_session(request) is not None:
        return RedirectResponse("/dashboard", status.HTTP_303_SEE_OTHER)
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    st = _st(request)
    if not _same_origin(request):
        return _login_page(request, "Cross-origin login refused.", status.HTTP_403_FORBIDDEN)
    fail_key = f"{st.queue.keys.prefix}dash:loginfail:{_client_addr(request)}"
    failures = await st.queue.redis.get(fail_key)
    if failures is not None and int(failures) >= LOGIN_FAILURES_PER_MINUTE:
        return _login_page(request, "Too many attempts; wait a minute.", 429)
    body = (await request.body())[:8192].decode("utf-8", "replace")
    token = (parse_qs(body).get("token") or [""])[0]
    expected: str | None = request.app.state.admin_token
    if expected is not None and not token_matches(expected, token):
        pipe = st.queue.redis.pipeline(transaction=True)
        pipe.incr(fail_key)
        pipe.expire(fail_key, 60)
        await pipe.execute()
        log.warning("dashboard login failed from %s", _client_addr(request))
        return _login_page(request, "Wrong token.", status.HTTP_401_UNAUTHORIZED)
    session_id = secrets.token_urlsafe(32)
    session = {"csrf": secrets.token_urlsafe(32), "created": time.time()}
    await st.queue.redis.set(_session_key(st, session_id), json.dumps(session), ex=SESSION_TTL_S)
    log.info("dashboard login from %s", _client_addr(request))
    response = RedirectResponse("/dashboard", status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=SESSION_TTL_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, _: Csrf) -> Response:
    st = _st(request)
    session_id = request.cookies.get(COOKIE, "")
    await st.queue.redis.delete(_session_key(st, session_id))
    response = JSONResponse({"logged_out": True})
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


@router.get("/static/{path:path}")
async def static_file(path: str, request: Request) -> Response:
    not_found = HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    if not path or "\x00" in path or "\\" in path:
        raise not_found
    try:
        target = (STATIC_DIR / path).resolve()
    except (OSError, ValueError):
        raise not_found from None
    if not target.is_relative_to(STATIC_DIR) or not target.is_file():
        raise not_found
    suffix = target.suffix.lower()
    if suffix not in _CONTENT_TYPES or any(p.startswith(".") for p in target.parts[-1:]):
        raise not_found
    data = target.read_bytes()
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    vendored = "vendor" in target.relative_to(STATIC_DIR).parts
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=86400" if vendored else "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    media_type = _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(target.name)[0]
    return Response(data, media_type=media_type, headers=headers)


# ------------------------------------------------------------------ read API


def _thresholds(st: AppState) -> dict[str, Any]:
    rules = {str(r["name"]): r for r in st.rules}

    def pair(name: str, warning: float | None, critical: float | None) -> dict[str, Any]:
        rule = rules.get(name, {})
        return {
            "warning": rule.get("warning", warning),
            "critical": rule.get("critical", critical),
        }

    return {
        "sla_warning_ms": st.settings.sla_warning_threshold_ms,
        "sla_critical_ms": st.settings.sla_critical_threshold_ms,
        "sla_objective": st.settings.sla_objective,
        "sla_compliance": pair("sla_compliance_low", st.settings.sla_objective, None),
        "utilization": pair("worker_utilization_high", 0.8, 0.9),
        "queue_wait_ms": pair("queue_wait_high", 5000, 10000),
        "oldest_waiting_ms": pair(
            "oldest_waiting_age_high",
            st.settings.sla_warning_threshold_ms,
            st.settings.sla_critical_threshold_ms,
        ),
        "failure_rate": pair("failure_rate_high", 0.1, None),
    }


def _workers(st: AppState, raw: Sequence[Mapping[str, Any]], now: float) -> list[dict[str, Any]]:
    stale_after = max(3.0, 2.5 * st.settings.heartbeat_ms / 1000)
    found = []
    for w in raw:
        age = max(0.0, now - float(w.get("heartbeat_at", 0)))
        found.append(
            {
                "id": w.get("id"),
                "host": w.get("host"),
                "pid": w.get("pid"),
                "slots": w.get("slots"),
                "busy": w.get("busy"),
                "utilization": w.get("utilization"),
                "throughput": w.get("throughput"),
                "processed": w.get("processed"),
                "failed": w.get("failed"),
                "heartbeat_at": w.get("heartbeat_at"),
                "heartbeat_age_s": round(age, 1),
                "stale": age > stale_after,
            }
        )
    return sorted(found, key=lambda w: (str(w["host"]), int(w["pid"] or 0)))


async def build_summary(st: AppState, *, record_depth: bool = False) -> dict[str, Any]:
    """Everything the live page shows except the chart series (one SSE event)."""
    now = time.time()
    snap = await st.monitor.snapshot()
    counts = snap["counts"]
    if record_depth:
        await sample_depth(st.queue.redis, st.queue.keys, counts, now)
    live = await live_profile(st.queue)
    overrides = await st.queue.live_settings()
    alerts = await st.alerts()
    w = snap["workers"]
    spool = st.spool_stats()
    return {
        "generated_at": now,
        "queue": st.queue.name,
        # This host's intake spool (sluice.spool): webhooks Redis could not take in time.
        "intake_spool": (
            {
                "depth": spool.depth,
                "oldest_age_s": round(spool.oldest_age_s, 3),
                "replayed": spool.replayed,
                "write_failures": spool.failures,
                "last_error": spool.last_error,
            }
            if spool is not None
            else None
        ),
        "counts": counts,
        "windows": snap["windows"],
        "capacity": snap["capacity"],
        "workers": _workers(st, w["list"], now),
        "workers_total": {
            "count": w["count"],
            "slots": w["slots"],
            "busy": w["busy"],
            "utilization_now": w["utilization_now"],
        },
        "profile": {
            "configured": st.settings.profile,
            "live": live,
            "effective": live or st.settings.profile,
        },
        "live_settings": overrides,
        "effective": {
            "concurrency": overrides["concurrency"] or st.settings.worker_concurrency,
            "rate_limit": (
                overrides["rate_limit"]
                if overrides["rate_limit"] is not None
                else st.settings.queue_rate_limit
            ),
        },
        "thresholds": _thresholds(st),
        "alerts": alerts,
    }


@router.get("/api/summary")
async def summary(request: Request, _: Session) -> dict[str, Any]:
    return await build_summary(_st(request), record_depth=True)


def _parse(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in raw.items():
        try:
            out[k.decode()] = int(v)
        except ValueError:
            continue
    return out


def _point(t: int, seconds: float, buckets: Sequence[Mapping[str, int]]) -> dict[str, Any]:
    plain = [{k: v for k, v in b.items() if not k.startswith("_")} for b in buckets]
    stats = combine("point", max(1, round(seconds)), plain)
    samples = sum(b.get("_qdn", 0) for b in buckets)
    sla: Histogram = stats.sla
    return {
        "t": t,
        "throughput": stats.completed / seconds if seconds else 0.0,
        "arrival": stats.get("enq") / seconds if seconds else 0.0,
        "failed": stats.failed,
        "p50": sla.percentile(50),
        "p95": sla.percentile(95),
        "p99": sla.percentile(99),
        "utilization": stats.utilization,
        "depth": sum(b.get("_qd", 0) for b in buckets) / samples if samples else None,
        "oldest_age_ms": sum(b.get("_age", 0) for b in buckets) / samples if samples else None,
    }


async def build_series(st: AppState, span: Literal["1h", "24h"]) -> dict[str, Any]:
    """Chart series: the last hour per minute from the 10 s buckets, or the last 24 h per
    5 minutes from the 1-minute roll-ups (minutes not rolled up yet come from the 10 s
    buckets). Rates are per second; the current, partial step is scaled to its length."""
    now = time.time()
    prefix = st.queue.keys.prefix
    minute_now = int(now // COARSE_S)
    if span == "1h":
        minutes = list(range(minute_now - 59, minute_now + 1))
        coarse_ids: list[int] = []
        fine_minutes = minutes
        step_min = 1
    else:
        first = minute_now - 24 * 60 + 1
        first -= first % 5
        minutes = list(range(first, minute_now + 1))
        coarse_ids = [m for m in minutes if m < minute_now]
        fine_minutes = [m for m in minutes if m >= minute_now - 119]
        step_min = 5
    pipe = st.queue.redis.pipeline(transaction=False)
    for m in coarse_ids:
        pipe.hgetall(f"{prefix}mon:1m:{m}")
    fine_ids = [m * 6 + i for m in fine_minutes for i in range(6)]
    for index in fine_ids:
        pipe.hgetall(f"{prefix}mon:10s:{index}")
    raw = await pipe.execute() if coarse_ids or fine_ids else []
    coarse = {m: _parse(r) for m, r in zip(coarse_ids, raw[: len(coarse_ids)], strict=True)}
    fine: dict[int, list[dict[str, int]]] = {}
    for index, r in zip(fine_ids, raw[len(coarse_ids) :], strict=True):
        if r:
            fine.setdefault(index // 6, []).append(_parse(r))
    per_minute: dict[int, list[dict[str, int]]] = {}
    for m in minutes:
        rolled = coarse.get(m)
        if rolled and rolled.get("_rolled"):
            per_minute[m] = [{k: v for k, v in rolled.items() if k != "_rolled"}]
        else:
            per_minute[m] = fine.get(m, [])
    points = []
    for start in range(minutes[0], minute_now + 1, step_min):
        group = [b for m in range(start, start + step_min) for b in per_minute.get(m, [])]
        seconds = min(step_min * COARSE_S, max(FINE_S, now - start * COARSE_S))
        points.append(_point(start * COARSE_S, seconds, group))
    return {
        "span": span,
        "step_s": step_min * COARSE_S,
        "now": now,
        "sla_warning_ms": st.settings.sla_warning_threshold_ms,
        "sla_critical_ms": st.settings.sla_critical_threshold_ms,
        "points": points,
    }


@router.get("/api/series")
async def series(
    request: Request, _: Session, span: Annotated[Literal["1h", "24h"], Query()] = "1h"
) -> dict[str, Any]:
    return await build_series(_st(request), span)


@router.get("/api/breakdown")
async def breakdown(
    request: Request, _: Session, window: Annotated[Literal["1m", "5m", "1h"], Query()] = "5m"
) -> dict[str, Any]:
    seconds = {"1m": 60, "5m": 300, "1h": 3600}[window]
    stats = await _st(request).monitor.reader.window(window, seconds)
    return {"window": window, "completed": stats.completed, "breakdown_ms": stats.breakdown()}


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


async def search_jobs(st: AppState, q: str) -> dict[str, Any]:
    """Find by job id, message id or conversation key (all that match, newest first)."""
    q = q.strip()
    if not q or len(q) > 200:
        return {"query": q, "matches": [], "conversation": None}
    queue, redis, keys = st.queue, st.queue.redis, st.queue.keys
    found: dict[str, str] = {}  # job id -> how it matched
    if q.isdigit() and await queue.get_job(q) is not None:
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
    return await search_jobs(_st(request), q)


@router.get("/api/jobs/{job_id}")
async def job(request: Request, _: Session, job_id: str) -> dict[str, Any]:
    st = _st(request)
    if not job_id.isdigit() or len(job_id) > 20:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
    record = await st.queue.get_job(job_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
    return _job_view(st, record)


@router.get("/api/dead-letters")
async def dead_letters(
    request: Request, _: Session, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> dict[str, Any]:
    st = _st(request)
    records = await st.queue.dead_letters(limit, 0)
    counts = await st.queue.counts()
    return {"total": counts["dead"], "items": [_job_view(st, r) for r in records]}


@router.get("/api/alerts")
async def alerts(request: Request, _: Session) -> dict[str, Any]:
    st = _st(request)
    return {"active": await st.alerts(), "history": await st.alert_history(), "rules": st.rules}


@router.get("/api/drain-preview")
async def drain_preview(request: Request, _: Session) -> dict[str, int]:
    counts = await _st(request).queue.counts()
    return {
        "waiting": counts["waiting"],
        "delayed": counts["delayed"],
        "would_remove": counts["waiting"] + counts["delayed"],
    }


# ------------------------------------------------------------------ controls


class DrainBody(BaseModel):
    confirm: bool = False
    expected: int = Field(..., ge=0, description="the count the operator confirmed")


class LiveBody(BaseModel):
    concurrency: int | None = Field(None, ge=1, le=10_000)
    rate_limit: int | None = Field(None, ge=0, le=1_000_000)


class ProfileBody(BaseModel):
    profile: Literal["optimized", "legacy"]


class SilenceBody(BaseModel):
    minutes: int = Field(..., ge=1, le=7 * 24 * 60)


def _fingerprint(value: str) -> str:
    if not (8 <= len(value) <= 64) or not all(
        c in "0123456789abcdefghijklmnopqrstuvwxyz_" for c in value
    ):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alert")
    return value


def _job_id(value: str) -> str:
    if not value.isdigit() or len(value) > 20:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
    return value


@router.post("/api/queue/pause")
async def pause(request: Request, _: Csrf) -> dict[str, bool]:
    changed = await _st(request).queue.pause()
    log.info("dashboard: queue paused (changed=%s)", changed)
    return {"paused": True, "changed": changed}


@router.post("/api/queue/resume")
async def resume(request: Request, _: Csrf) -> dict[str, bool]:
    changed = await _st(request).queue.resume()
    log.info("dashboard: queue resumed (changed=%s)", changed)
    return {"paused": False, "changed": changed}


@router.post("/api/queue/drain")
async def drain(request: Request, _: Csrf, body: DrainBody) -> JSONResponse:
    """Drain only what the operator confirmed: if more is waiting now than the count the
    confirmation showed, answer 409 with the new count so the page can ask again."""
    queue = _st(request).queue
    counts = await queue.counts()
    would = counts["waiting"] + counts["delayed"]
    if not body.confirm or would > body.expected:
        return JSONResponse(
            {"detail": "confirm the current count", "would_remove": would},
            status.HTTP_409_CONFLICT,
        )
    removed = await queue.drain()
    log.warning("dashboard: queue drained, %d jobs removed", removed)
    return JSONResponse({"removed": removed})


@router.post("/api/settings")
async def live_settings(request: Request, _: Csrf, body: LiveBody) -> dict[str, int | None]:
    queue = _st(request).queue
    await queue.set_concurrency(body.concurrency)
    await queue.set_rate_limit(body.rate_limit)
    log.info(
        "dashboard: live settings concurrency=%s rate_limit=%s", body.concurrency, body.rate_limit
    )
    return await queue.live_settings()


@router.post("/api/profile")
async def profile(request: Request, _: Csrf, body: ProfileBody) -> dict[str, Any]:
    queue = _st(request).queue
    await switch_profile(queue, body.profile)
    log.info("dashboard: profile switched to %s", body.profile)
    return {"profile": body.profile, **await queue.live_settings()}


@router.post("/api/dead-letters/{job_id}/retry")
async def retry_dead(request: Request, _: Csrf, job_id: str) -> dict[str, str]:
    if not await _st(request).queue.retry_dead(_job_id(job_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} is not a dead letter")
    return {"job_id": job_id, "state": "waiting"}


@router.post("/api/dead-letters/{job_id}/delete")
async def delete_dead(request: Request, _: Csrf, job_id: str) -> dict[str, int]:
    purged = await _st(request).queue.purge_dead([_job_id(job_id)])
    if not purged:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} is not a dead letter")
    return {"purged": purged}


@router.post("/api/alerts/{fingerprint}/ack")
async def ack(request: Request, _: Csrf, fingerprint: str) -> dict[str, str]:
    try:
        await _st(request).request_ack(_fingerprint(fingerprint), "dashboard")
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    return {"fingerprint": fingerprint, "requested": "ack"}


@router.post("/api/alerts/{fingerprint}/silence")
async def silence(request: Request, _: Csrf, fingerprint: str, body: SilenceBody) -> dict[str, Any]:
    try:
        until = await _st(request).request_silence(
            _fingerprint(fingerprint), body.minutes * 60, "dashboard"
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    return {"fingerprint": fingerprint, "requested": "silence", "until": until}


# ------------------------------------------------------------------ live events


async def _events(request: Request, session_id: str) -> AsyncIterator[str]:
    st = _st(request)
    started = time.monotonic()
    yield "retry: 2000\n\n"
    while time.monotonic() - started < SSE_MAX_LIFETIME_S:
        if await request.is_disconnected():
            return
        if await st.queue.redis.get(_session_key(st, session_id)) is None:
            yield "event: logout\ndata: {}\n\n"
            return
        try:
            data = await build_summary(st, record_depth=True)
            yield f"event: snapshot\ndata: {json.dumps(data, allow_nan=False)}\n\n"
        except Exception as exc:  # keep the stream: the page shows the error and retries
            log.warning("dashboard snapshot failed: %s", type(exc).__name__)
            yield f"event: error\ndata: {json.dumps({'error': type(exc).__name__})}\n\n"
        await asyncio.sleep(SSE_INTERVAL_S)


@router.get("/events")
async def events(request: Request, _: Session) -> StreamingResponse:
    """Server-sent events: a ``snapshot`` event (the summary) every 1.5 s."""
    return StreamingResponse(
        _events(request, request.cookies.get(COOKIE, "")),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
