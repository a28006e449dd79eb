"""Bearer-token protection of admin routes.

Constant-time comparison; the token never appears in logs or responses. Without a
configured token the API only serves on a loopback address (enforced at startup by
:func:`check_bind_address`), where the admin routes are open to local processes only.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False, description="SLUICE_ADMIN_TOKEN")


class InsecureBindError(RuntimeError):
    """Refusing to expose unauthenticated admin routes beyond this machine."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
        return  # loopback-only deployment (checked at startup)
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
