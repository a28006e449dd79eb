"""The FastAPI application: health, readiness, metrics and the admin API.

``create_app(settings, redis_url)`` opens the process's Redis pool in the lifespan, so the
same app object serves `sluice serve`, `sluice up` and the tests (on a real loopback port).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response, status
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from sluice import __version__
from sluice.api import admin, dashboard, metrics, webhooks
from sluice.api.auth import require_admin
from sluice.api.body_limit import BodyLimit
from sluice.api.state import AppState, app_state
from sluice.app import queue_for
from sluice.broker.assignment import Assigner
from sluice.broker.config import load_brokers_from_env
from sluice.config import Settings
from sluice.conversations import Conversations
from sluice.intake import Intake
from sluice.monitor.alert_config import AlertSettings
from sluice.monitor.service import MonitoringService
from sluice.monitor.snapshot import Monitor
from sluice.redis.pool import RedisUnavailableError, connect
from sluice.spool import Spool, spool_path

log = logging.getLogger("sluice.api")


async def _connect(settings: Settings, url: str) -> Any:
    kwargs: dict[str, Any] = {
        "pool_enabled": settings.redis_pool_enabled,
        "max_connections": settings.redis_pool_max_connections,
        "wait_timeout_s": settings.redis_pool_timeout_s,
    }
    try:
        return await connect(url, min_connections=settings.redis_pool_min_connections, **kwargs)
    except RedisUnavailableError as exc:
        # Still serve: the health document is most needed exactly when Redis is down.
        log.error("Redis unavailable at startup (%s); serving health as critical", exc)
        return await connect(url, min_connections=0, **kwargs)


def create_app(
    settings: Settings,
    redis_url: str,
    *,
    alert_settings: AlertSettings | None = None,
    run_evaluator: bool = True,
) -> FastAPI:
    """The app. ``run_evaluator`` makes this process a candidate for the alert leader."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        handle = await _connect(settings, redis_url)
        queue = queue_for(settings, handle.client)
        monitor = Monitor(
            queue, sla_objective=settings.sla_objective, rate_limit=settings.queue_rate_limit
        )
        spool = Spool(spool_path(settings.data_dir, settings.queue))
        service = MonitoringService(
            monitor, alert_settings, local_signals=lambda: spool.stats().signals()
        )
        await spool.open()
        if spool.depth:
            log.warning("%d webhooks wait in the intake spool %s", spool.depth, spool.path)
        app.state.sluice = AppState(
            settings=settings,
            redis=handle,
            queue=queue,
            monitor=monitor,
            alerts=service.alerts,
            alert_history=service.history,
            request_ack=service.request_ack,
            request_silence=service.request_silence,
            rules=service.rule_table(),
            intake=Intake(
                queue,
                Conversations(queue.redis, queue.keys, answer_open=settings.chatwoot_answer_open),
                secret=(
                    settings.chatwoot_webhook_secret.get_secret_value()
                    if settings.chatwoot_webhook_secret
                    else None
                ),
                max_body_bytes=settings.webhook_max_bytes,
                default_account_id=settings.chatwoot_account_id,
                on_resolved=Assigner(queue.redis, queue.keys, load_brokers_from_env()).release,
                spool=spool,
            ),
        )
        assert app.state.sluice.intake is not None
        replayer = asyncio.create_task(app.state.sluice.intake.replay_spool(), name="spool")
        if run_evaluator:
            service.start()
        try:
            yield
        finally:
            replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replayer
            if run_evaluator:
                await service.stop()
            await spool.close()
            await handle.close()

    app = FastAPI(
        title="Sluice",
        version=__version__,
        summary="Every customer chat message answered within its SLA.",
        lifespan=lifespan,
    )
    # Admin and dashboard bodies are tiny; the webhook streams against its own limit.
    app.add_middleware(BodyLimit, exempt=(webhooks.WEBHOOK_PATH,))
    app.state.admin_token = (
        settings.admin_token.get_secret_value() if settings.admin_token else None
    )
    app.include_router(admin.router)
    app.include_router(webhooks.router)
    app.include_router(dashboard.router)

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        """The process is alive (it answers)."""
        return {"status": "alive"}

    @app.get("/readyz", tags=["probes"])
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

    @app.get("/metrics", tags=["probes"], dependencies=[Depends(require_admin)])
    async def prometheus_metrics(request: Request) -> Response:
        """Prometheus text format, rendered from Redis (all processes, all hosts)."""
        st = app_state(request.app)
        firing: dict[str, int] = {}
        for alert in await st.alerts():
            if alert.get("status") == "firing":
                severity = str(alert.get("severity"))
                firing[severity] = firing.get(severity, 0) + 1
        try:
            body = await metrics.render(st.queue, st.monitor, st.redis, firing, st.spool_stats())
        except (RedisError, OSError) as exc:
            # 200 with what this process knows (sluice_redis_up 0, its intake spool): a
            # failed scrape would drop exactly the series that matter during an outage.
            return Response(
                f"# Redis unavailable: {type(exc).__name__}\n".encode()
                + metrics.render_local(st.spool_stats()),
                media_type=metrics.CONTENT_TYPE,
            )
        return Response(body, media_type=metrics.CONTENT_TYPE)

    @app.exception_handler(RedisError)
    async def redis_down(request: Request, exc: RedisError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"Redis unavailable: {type(exc).__name__}"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    return app
