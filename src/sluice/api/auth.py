"""Bearer-token protection of admin routes.

Constant-time comparison; the token never appears in logs or responses. Without a
configured token the API only serves on a loopback address (enforced at startup by
:func:`check_bind_address`), where the admin routes are open to local processes only.

A loopback bind alone does not make a request local: a reverse proxy (nginx, Caddy, a
sidecar) on the same host connects from 127.0.0.1 and relays requests from anywhere. So
tokenless access is granted per request, only when the TCP peer is a loopback address AND
the request carries none of the headers a proxy adds (:data:`PROXY_HEADERS`). Everything
else is refused with a message that says to set ``SLUICE_ADMIN_TOKEN``. The peer is taken
from the ASGI scope: uvicorn rewrites it only from ``X-Forwarded-For``, whose presence is
refused anyway, so without those headers it is the socket's peer. A relay that adds none of
these headers (a raw TCP forwarder, an SSH tunnel) cannot be told from a local client; a
deployment with one needs the token like any other.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False, description="SLUICE_ADMIN_TOKEN")

PROXY_HEADERS: tuple[str, ...] = (
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
)
"""Headers that only a relaying proxy sets: any one of them (even empty) means the loopback
peer is not the client, so the request gets no tokenless access."""


class InsecureBindError(RuntimeError):
    """Refusing to expose unauthenticated admin routes beyond this machine."""


def is_loopback(host: str) -> bool:
    """True for a loopback name or address, including IPv4-mapped IPv6 (``::ffff:127.0.0.1``,
    which a dual-stack socket reports for an IPv4 peer and Python 3.11 does not call
    loopback)."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def tokenless_refusal(request: Request) -> str | None:
    """Why ``request`` may not use tokenless admin access, or None when it may.

    Only a direct loopback client qualifies: its TCP peer is a loopback address and it came
    through no proxy. The reason is safe to show the client (it names no secret).
    """
    relayed = [name for name in PROXY_HEADERS if name in request.headers]
    if relayed:
        return (
            f"request relayed by a proxy ({', '.join(relayed)} header): without "
            "SLUICE_ADMIN_TOKEN only direct loopback clients are admitted; set "
            "SLUICE_ADMIN_TOKEN and send 'Authorization: Bearer <SLUICE_ADMIN_TOKEN>'"
        )
    peer = request.client.host if request.client else None
    if peer is None or not is_loopback(peer):
        return (
            "without SLUICE_ADMIN_TOKEN only direct loopback clients are admitted; set "
            "SLUICE_ADMIN_TOKEN and send 'Authorization: Bearer <SLUICE_ADMIN_TOKEN>'"
        )
    return None


async def require_direct_loopback(request: Request) -> None:
    """Without a configured token, refuse (403) anyone but a direct loopback client.

    Used as-is by the dashboard (its own login and sessions come after this gate) and by
    :func:`require_admin` for the admin API. With a token it admits everyone here: the token
    check itself is done elsewhere.
    """
    if request.app.state.admin_token is not None:
        return
    reason = tokenless_refusal(request)
    if reason is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, reason)


def check_bind_address(host: str, token: str | None) -> None:
    if not token and not is_loopback(host):
        raise InsecureBindError(
            f"refusing to serve the admin API on {host} without SLUICE_ADMIN_TOKEN; "
            "set a token, or bind to 127.0.0.1"
        )


def token_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    expected: str | None = request.app.state.admin_token
    if expected is None:
        await require_direct_loopback(request)  # loopback bind checked at startup; peer here
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token: send 'Authorization: Bearer <SLUICE_ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not token_matches(expected, credentials.credentials):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid token", headers={"WWW-Authenticate": "Bearer"}
        )


AdminOnly = Depends(require_admin)
