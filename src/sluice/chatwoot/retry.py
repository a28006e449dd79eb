"""The retry policy for Chatwoot calls: which failures are retried, how long to wait, and
which failures may still land.

Every reply races an SLA, so the policy is shared by all calls (:mod:`sluice.chatwoot.transport`
applies it): 429 and 5xx and network faults are retried, honouring Retry-After (delta-seconds
or an HTTP date); 401/403/404/422 never are, since repeating cannot fix them.

Some failures are *ambiguous*: Chatwoot (or the proxy in front of it) may have acted on the
request anyway (a timeout, a 500/502/504). Of those, a failure without any answer (a
timeout, a dropped connection, a 502/504 from a proxy that gave up on Chatwoot) may even
land *later*, after the link heals. :func:`may_still_land` reads that fact back from a
failed job's recorded error, so a retried job looks twice before it posts again.
"""

from __future__ import annotations

import math
import re
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

from sluice.chatwoot.errors import ChatwootError

RETRYABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
# A 5xx from these may come after Chatwoot (or the proxy in front) already acted.
AMBIGUOUS_STATUSES: Final = frozenset({500, 502, 504})
# A proxy in front of Chatwoot gave up on it: Chatwoot may still be handling the request.
NO_ANSWER_STATUSES: Final = frozenset({502, 504})
# How such failures read in a job's recorded error (see may_still_land).
_NO_ANSWER_TEXT: Final = re.compile(r"timed out|network error|Chatwoot 50[24]\b")
# Appended to the error of a call whose *earlier* attempt failed without an answer, when a
# later attempt failed differently (a 429 after a timeout): the job's recorded error then
# still says that a request may land late.
MAY_STILL_LAND: Final = "an earlier attempt may still land"
# What the queue records when a turn was cut short: its lease ran out (the worker died or
# stalled) or the worker cancelled it at shutdown; a POST of that turn may be on its way.
_CUT_SHORT: Final = ("lease expired", "handed back mid-turn")


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def may_still_land(recorded_error: str | None) -> bool:
    """Whether a failed job's recorded error (the worker stores ``"<class>: <message>"``)
    is a Chatwoot call that failed without an answer (a timeout, a network error, a
    502/504), so a request of that attempt may still be on its way and land late. Errors
    Chatwoot answered (429, 500, 4xx) are not, unless an earlier attempt of the same call
    went unanswered (:data:`MAY_STILL_LAND`). A turn cut short (its lease expired, or the
    worker cancelled it at shutdown) may have left a POST in flight too. Errs on the side
    of yes (a connect error counts), which only costs a second look."""
    if not recorded_error:
        return False
    if MAY_STILL_LAND in recorded_error or recorded_error.startswith(_CUT_SHORT):
        return True
    if not recorded_error.startswith("Chatwoot"):
        return False
    return _NO_ANSWER_TEXT.search(recorded_error) is not None


def noting_unanswered(error: ChatwootError, unanswered: bool) -> ChatwootError:
    """``error`` with :data:`MAY_STILL_LAND` in its message when an earlier attempt of the
    call went unanswered, so the job's recorded error keeps that fact."""
    if not unanswered or MAY_STILL_LAND in error.message:
        return error
    noted = type(error)(
        error.status,
        f"{error.message} ({MAY_STILL_LAND})",
        error.retryable,
        retry_after=error.retry_after,
    )
    noted.__cause__ = error.__cause__
    return noted
