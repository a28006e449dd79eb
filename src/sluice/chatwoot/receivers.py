"""What a Sluice receiver in Chatwoot is: an agent bot or webhook whose URL ends in
``/webhooks/chatwoot``, subscribed to the events Sluice needs, at an address Chatwoot will
send to.

Shared by ``sluice chatwoot setup`` (which creates or reuses the receiver) and ``sluice
validate`` (which finds it and checks it), so both agree on what counts as the same URL and
on which events are needed. The private-address test follows Chatwoot's SafeFetch: from 4.14
(PR #14155) it refuses webhook URLs on loopback, private or link-local addresses unless
SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true (see :mod:`sluice.chatwoot.features`).
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Final
from urllib.parse import urlsplit

RECEIVER_PATH: Final = "/webhooks/chatwoot"
# What Sluice's intake acts on (docs/chatwoot.md); all in ALLOWED_WEBHOOK_EVENTS (facts §9).
NEEDED_EVENTS: Final = (
    "message_created",
    "message_updated",
    "conversation_created",
    "conversation_status_changed",
    "conversation_updated",
)


def same_url(a: object, b: str) -> bool:
    """The same receiver: scheme and host compared case-insensitively, a trailing slash of
    the path ignored."""
    if not isinstance(a, str):
        return False

    def key(url: str) -> tuple[str, str, str, str]:
        parts = urlsplit(url.strip())
        return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query

    return key(a) == key(b)


def is_receiver_url(url: object) -> bool:
    """Whether ``url`` points at a Sluice intake (its path ends in /webhooks/chatwoot)."""
    return isinstance(url, str) and urlsplit(url.strip()).path.rstrip("/").endswith(RECEIVER_PATH)


def _private(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False


async def private_destination(url: str, *, resolve_timeout_s: float = 2.0) -> bool | None:
    """Whether ``url``'s host is a loopback, private or link-local address (literally, or as
    it resolves from here); None when the name does not resolve here."""
    host = (urlsplit(url).hostname or "").strip("[]")
    if _private(host):
        return True
    try:
        ipaddress.ip_address(host)
        return False  # a public literal address
    except ValueError:
        pass
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, None), resolve_timeout_s
        )
    except (OSError, TimeoutError):
        return None
    return any(_private(str(info[4][0])) for info in infos)
