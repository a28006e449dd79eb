"""The Chatwoot REST client brokers use to reply, hand off, label and assign.

:class:`ChatwootClient` is one object put together from one piece per job, so each can be
read alone:

- :mod:`sluice.chatwoot.transport`: sending a call: the connection pool, the token (only
  ever in the ``api_access_token`` header, never logged, put in an error or shown by
  ``repr``), the retry loop that never sleeps past the job's ``deadline``, and the look for
  an earlier attempt that may have landed before a call is repeated;
- :mod:`sluice.chatwoot.retry`: the retry policy (429 and 5xx and network faults are
  retried, honouring Retry-After; 401/403/404/422 never are) and :func:`may_still_land`;
- :mod:`sluice.chatwoot.errors`: :class:`ChatwootError` and what each status means;
- :mod:`sluice.chatwoot.messages`: posting a reply exactly once (``sluice_reply_id``) and
  reading messages back (``find_reply``);
- :mod:`sluice.chatwoot.conversations`: assignment, status, labels, typing, agents.

This module keeps the names callers import (``from sluice.chatwoot.client import
ChatwootClient, ChatwootError, may_still_land``).
"""

from __future__ import annotations

from typing import Any

from sluice.chatwoot.conversations import ONLINE_AGENTS_TTL_S
from sluice.chatwoot.errors import ChatwootDeadlineError, ChatwootError
from sluice.chatwoot.messages import REPLY_ID_ATTRIBUTE, MessageEndpoints
from sluice.chatwoot.retry import (
    MAY_STILL_LAND,
    RETRYABLE_STATUSES,
    may_still_land,
    parse_retry_after,
)
from sluice.chatwoot.transport import Guard, log

__all__ = [
    "MAY_STILL_LAND",
    "ONLINE_AGENTS_TTL_S",
    "REPLY_ID_ATTRIBUTE",
    "RETRYABLE_STATUSES",
    "ChatwootClient",
    "ChatwootDeadlineError",
    "ChatwootError",
    "Guard",
    "log",
    "may_still_land",
    "parse_retry_after",
]


class ChatwootClient(MessageEndpoints):
    """Async client for the Application API under ``{base_url}/api/v1/accounts/{id}``.

    The constructor's options (timeouts, retries, backoff, ``landing_grace_s``, a shared
    ``http`` pool, an injectable ``clock``) are those of
    :class:`~sluice.chatwoot.transport.ChatwootTransport`; the calls are those of
    :class:`~sluice.chatwoot.messages.MessageEndpoints` and
    :class:`~sluice.chatwoot.conversations.ConversationEndpoints`.
    """

    async def inbox(self, account_id: int, inbox_id: int) -> dict[str, Any] | None:
        """One inbox (``GET /api/v1/accounts/{id}/inboxes/{inbox_id}``, ``InboxesController
        #show`` rendering ``api/v1/models/_inbox.json.jbuilder``: ``working_hours_enabled``,
        ``working_hours``, ``timezone``...), or None when the answer is not an object. One
        retry: a deadline's business hours can wait for the next message."""
        body = await self._call("GET", account_id, f"/inboxes/{inbox_id}", retries=1)
        body = body.get("payload", body) if isinstance(body, dict) else body
        return body if isinstance(body, dict) else None
