"""The dashboard's router: its parts, mounted under ``/dashboard`` behind one gate.

Without a configured admin token every ``/dashboard`` request (pages, API, events, static
files, login) must come from a direct loopback client: a loopback TCP peer and none of the
proxy headers (``Forwarded``, ``X-Forwarded-*``, ``X-Real-IP``), else 403. A bind on
127.0.0.1 behind a reverse proxy would otherwise hand a session to anyone the proxy relays
(:func:`sluice.api.auth.require_direct_loopback`). Checking every request, not only the
login, also shuts out a session cookie replayed through such a proxy. Sessions and CSRF
(:mod:`sluice.api.dashboard.sessions`) come after this gate.

The names the single routes module used to offer are re-exported below for code written
against it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from sluice.api.auth import require_direct_loopback
from sluice.api.dashboard import (
    alerts,
    assets,
    breakers,
    charts,
    concurrency,
    controls,
    deadlines,
    events,
    fairness,
    jobs,
    pages,
    scaling,
    summary,
)
from sluice.api.dashboard.assets import STATIC_DIR
from sluice.api.dashboard.charts import build_series
from sluice.api.dashboard.jobs import search_jobs
from sluice.api.dashboard.sessions import (
    COOKIE,
    COOKIE_PATH,
    PREFIX,
    SESSION_TTL_S,
    Csrf,
    Session,
    require_csrf,
    require_session,
)
from sluice.api.dashboard.summary import build_summary

__all__ = [
    "COOKIE",
    "COOKIE_PATH",
    "SESSION_TTL_S",
    "STATIC_DIR",
    "Csrf",
    "Session",
    "build_series",
    "build_summary",
    "require_csrf",
    "require_session",
    "router",
    "search_jobs",
]

router = APIRouter()
# The prefix is given here, not to the parts' own routers: FastAPI refuses to include a
# route with an empty path (the index page's) without a prefix.
for part in (
    pages,
    assets,
    summary,
    charts,
    concurrency,
    jobs,
    alerts,
    controls,
    events,
    deadlines,
    scaling,
    breakers,
    fairness,
):
    router.include_router(
        part.router,
        prefix=PREFIX,
        include_in_schema=False,
        dependencies=[Depends(require_direct_loopback)],
    )
