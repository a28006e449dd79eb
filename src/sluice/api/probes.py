"""What orchestrators and Prometheus poll: liveness, readiness and the metrics.

Liveness and readiness are separate on purpose: a process whose Redis is down is alive
(restarting it would not bring Redis back, and meanwhile it keeps webhooks in its intake
spool and serves the health document) but not ready. The metrics are behind the admin
token (or, without one, the loopback rule) like the admin API.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from sluice.api import metrics, process_metrics
from sluice.api.auth import require_admin
from sluice.api.state import app_state

router = APIRouter(tags=["probes"])


@router.get("/healthz")
async def healthz() -> dict[str, str | int]:
    """The process is alive (it answers); ``pid`` says which of the API processes did."""
    return {"status": "alive", "pid": os.getpid()}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Redis answers and every Lua script is loaded: the process can do its work."""
    st = app_state(request.app)
    try:
        await st.queue.scripts.load_all(st.queue.redis)
        shas = [s.sha for s in st.queue.scripts._scripts.values()]
        loaded = await st.queue.redis.script_exists(*shas)
    except (RedisError, OSError) as exc:
        return JSONResponse(
            {"ready": False, "reason": f"Redis unavailable: {type(exc).__name__}"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    if not all(loaded):
        return JSONResponse({"ready": False, "reason": "scripts not loaded"}, 503)
    return JSONResponse({"ready": True, "scripts": len(shas)})


@router.get("/metrics", dependencies=[Depends(require_admin)])
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus text format, rendered from Redis (all processes, all hosts; the pools and
    spool of every API process of this host)."""
    st = app_state(request.app)
    firing: dict[str, int] = {}
    for alert in await st.alerts():
        if alert.get("status") == "firing":
            severity = str(alert.get("severity"))
            firing[severity] = firing.get(severity, 0) + 1
    try:
        own = process_metrics.readings(st.redis, st.spool_stats())
        key = st.queue.keys.api_processes(process_metrics.host_name())
        processes = await process_metrics.host_processes(st.queue.redis, key, own)
        body = await metrics.render(st.queue, st.monitor, firing, processes)
    except (RedisError, OSError) as exc:
        # 200 with what this process knows (sluice_redis_up 0, its intake spool): a
        # failed scrape would drop exactly the series that matter during an outage.
        return Response(
            f"# Redis unavailable: {type(exc).__name__}\n".encode()
            + metrics.render_local(st.spool_stats()),
            media_type=metrics.CONTENT_TYPE,
        )
    return Response(body, media_type=metrics.CONTENT_TYPE)
