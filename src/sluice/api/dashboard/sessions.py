"""Dashboard sessions and CSRF protection: who may read the dashboard, and who may change
anything through it.

A browser cannot send the admin token with every request the way a script does, so a login
exchanges it for a session:

* The session id is random and lives only in the client's cookie (``HttpOnly``,
  ``SameSite=Strict``, scoped to ``/dashboard``). Redis keeps ``{csrf, created}`` under
  ``<queue prefix>dash:session:<sha256(id)>`` with a TTL, so a copy of Redis holds no usable
  session id, and every API process sees every session.
* Reading needs the session (401 without one). Every state-changing request also needs an
  ``X-CSRF-Token`` header equal to the session's CSRF token (constant-time comparison), and
  must not come from another origin; otherwise 403 and nothing changes. The token reaches
  the page in a ``<meta>`` tag of the (``no-store``) HTML shell, which another site cannot
  read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status

from sluice.api.state import AppState, app_state

PREFIX = "/dashboard"
COOKIE = "sluice_dash"
COOKIE_PATH = PREFIX
SESSION_TTL_S = 8 * 3600


def session_key(st: AppState, session_id: str) -> str:
    """The Redis key of a session: the id's digest, never the id itself."""
    digest = hashlib.sha256(session_id.encode()).hexdigest()
    return st.queue.keys.dashboard_session(digest)


async def open_session(st: AppState) -> str:
    """Store a new session with a fresh CSRF token; the id, for the cookie."""
    session_id = secrets.token_urlsafe(32)
    session = {"csrf": secrets.token_urlsafe(32), "created": time.time()}
    await st.queue.redis.set(session_key(st, session_id), json.dumps(session), ex=SESSION_TTL_S)
    return session_id


async def load_session(request: Request) -> dict[str, Any] | None:
    """The session named by the request's cookie, or None (no cookie, expired, logged out)."""
    session_id = request.cookies.get(COOKIE)
    if not session_id or len(session_id) > 128:
        return None
    st = app_state(request.app)
    raw = await st.queue.redis.get(session_key(st, session_id))
    if raw is None:
        return None
    data: dict[str, Any] = json.loads(raw)
    return data


async def require_session(request: Request) -> dict[str, Any]:
    """The session of a JSON or event-stream request; 401 without one."""
    session = await load_session(request)
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not logged in")
    return session


def same_origin(request: Request) -> bool:
    """False only when the browser says the request came from another origin."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


async def require_csrf(request: Request) -> dict[str, Any]:
    """Session cookie AND a matching X-CSRF-Token header, else 403 (nothing changes)."""
    session = await load_session(request)
    given = request.headers.get("x-csrf-token", "")
    if (
        session is None
        or not given
        or not same_origin(request)
        or not hmac.compare_digest(str(session.get("csrf", "")).encode(), given.encode())
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or invalid CSRF token")
    return session


Session = Annotated[dict[str, Any], Depends(require_session)]
"""A route parameter that admits only logged-in readers."""

Csrf = Annotated[dict[str, Any], Depends(require_csrf)]
"""A route parameter that admits only state changes from the dashboard's own page."""
