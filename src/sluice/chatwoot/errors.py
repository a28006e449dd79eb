"""The errors a Chatwoot call raises, and what each HTTP status from Chatwoot means.

One exception type for every failure of a call (network, timeout, an error answer) so a
broker handles Chatwoot in one ``except``; ``retryable`` carries the retry policy's verdict
(:mod:`sluice.chatwoot.retry`) and ``retry_after`` the server's own wait. The texts for each
status say what Chatwoot means by it (its rack-attack throttle, per-account display ids,
the endpoints an agent-bot token may not use), so an operator reading a job's error knows
what to fix. Errors never carry the token: it travels only in a header.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import httpx

from sluice.errors import SluiceError

STATUS_MEANINGS: Final = {
    400: "bad request: Chatwoot could not parse the request",
    401: (
        "unauthorized: the api_access_token is invalid, or it is an agent-bot token on an "
        "endpoint bots may not use (listing messages and GET /agents need a user token)"
    ),
    403: "forbidden: the token's user has no permission for this account or resource",
    404: (
        "not found: unknown account, or no conversation with this display id in that "
        "account (conversation ids are per-account display ids)"
    ),
    422: (
        "unprocessable: Chatwoot rejected the request body as invalid (e.g. empty content, "
        "unknown status)"
    ),
    429: "rate limited: Chatwoot throttled us (rack-attack, 3000 requests/min per IP by default)",
}


class ChatwootError(SluiceError):
    """A Chatwoot call failed. ``status`` is None for network errors and timeouts;
    ``retryable`` says whether the same call may succeed later; ``retry_after`` is the
    server's requested wait in seconds, when it sent one."""

    def __init__(
        self,
        status: int | None,
        message: str,
        retryable: bool,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"Chatwoot {status}: {message}" if status is not None else message)
        self.status = status
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


class ChatwootDeadlineError(ChatwootError):
    """Gave up because the next attempt (or the wait before it) would pass the deadline.
    ``status`` and ``retryable`` are those of the last failure seen, if any."""


def server_detail(response: httpx.Response) -> str:
    """Chatwoot's own error text ({"error": ...} / {"message": ...}), shortened."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:200]
    if isinstance(body, Mapping):
        for key in ("error", "message", "errors"):
            if body.get(key):
                return str(body[key])[:200]
    return ""
