"""Where the HTTP API is assembled: one FastAPI application from the API's routers.

``create_app(settings, redis_url)`` only wires things together; it opens nothing, so it is
cheap to call and the same app object serves `sluice serve`, `sluice up` and the tests (on
a real loopback port). Connections and files are opened by the lifespan
(:mod:`sluice.api.lifespan`) when a server starts the app.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from sluice import __version__
from sluice.alerts.config import AlertSettings
from sluice.api import admin, dashboard, probes, scaling, webhooks
from sluice.api.body_limit import BodyLimit
from sluice.api.lifespan import lifespan
from sluice.settings.config import Settings


def create_app(
    settings: Settings,
    redis_url: str,
    *,
    alert_settings: AlertSettings | None = None,
    run_evaluator: bool = True,
) -> FastAPI:
    """The app. ``run_evaluator`` makes this process a candidate for the alert leader."""
    app = FastAPI(
        title="Sluice",
        version=__version__,
        summary="Every customer chat message answered within its SLA.",
        lifespan=lifespan(
            settings, redis_url, alert_settings=alert_settings, run_evaluator=run_evaluator
        ),
    )
    # Admin and dashboard bodies are tiny; the webhook streams against its own limit.
    app.add_middleware(BodyLimit, exempt=(webhooks.WEBHOOK_PATH,))
    app.state.admin_token = (
        settings.admin_token.get_secret_value() if settings.admin_token else None
    )
    app.include_router(admin.router)
    app.include_router(scaling.router)
    app.include_router(webhooks.router)
    app.include_router(dashboard.router)
    app.include_router(probes.router)
    app.exception_handler(RedisError)(_redis_down)
    return app


async def _redis_down(request: Request, exc: RedisError) -> JSONResponse:
    """Any route that meets a Redis error answers 503, not 500: the service is unavailable,
    it has no bug, and clients and load balancers should retry."""
    return JSONResponse(
        {"detail": f"Redis unavailable: {type(exc).__name__}"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )
