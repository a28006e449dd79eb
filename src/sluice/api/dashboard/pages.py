"""The pages a browser navigates to: the dashboard shell, and logging in and out.

The shell is static HTML with the session's CSRF token filled in; everything live comes
from the JSON API and the event stream afterwards. Pages are sent ``no-store`` (the token
must not linger in a cache) with a strict Content Security Policy (the page runs only its
own script, so injected markup cannot run anything).

Failed logins are counted per client address (``dash:loginfail:<addr>``, one minute); after
10 the login answers 429 for the rest of that minute, which makes guessing the admin token
through the form hopeless.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse, RedirectResponse

from sluice.api.auth import token_matches
from sluice.api.dashboard.assets import read_static
from sluice.api.dashboard.sessions import (
    COOKIE,
    COOKIE_PATH,
    SESSION_TTL_S,
    Csrf,
    load_session,
    open_session,
    same_origin,
    session_key,
)
from sluice.api.state import app_state

log = logging.getLogger("sluice.dashboard")

LOGIN_FAILURES_PER_MINUTE = 10

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

router = APIRouter()


def _page(body: str) -> Response:
    return Response(
        body,
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-store", **_SECURITY_HEADERS},
    )


def _login_page(request: Request, error: str = "", status_code: int = 200) -> Response:
    token_required = request.app.state.admin_token is not None
    text = read_static("login.html")
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


def _client_addr(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("")
@router.get("/")
async def index(request: Request) -> Response:
    session = await load_session(request)
    if session is None:
        return RedirectResponse("/dashboard/login", status.HTTP_303_SEE_OTHER)
    text = read_static("index.html").replace(
        "{{csrf}}", html.escape(str(session["csrf"]), quote=True)
    )
    return _page(text)


@router.get("/login")
async def login_form(request: Request) -> Response:
    if await load_session(request) is not None:
        return RedirectResponse("/dashboard", status.HTTP_303_SEE_OTHER)
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    """The admin token (a form field, never a URL) for a session cookie. Without a configured
    token (a loopback-only deployment) the form asks for none, but sessions work the same."""
    st = app_state(request.app)
    if not same_origin(request):
        return _login_page(request, "Cross-origin login refused.", status.HTTP_403_FORBIDDEN)
    fail_key = st.queue.keys.dashboard_login_failures(_client_addr(request))
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
    session_id = await open_session(st)
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
    st = app_state(request.app)
    session_id = request.cookies.get(COOKIE, "")
    await st.queue.redis.delete(session_key(st, session_id))
    response = JSONResponse({"logged_out": True})
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response
