"""How every Chatwoot call is sent: the connection, the retry loop, the deadline, and the
duplicate check before a retry.

Why not bare httpx calls: every reply races an SLA, so each call needs one retry policy
(:mod:`sluice.chatwoot.retry`: 429 and 5xx and network faults are retried, honouring
Retry-After; 401/403/404/422 never are, since repeating cannot fix them) that never sleeps
past the job's ``deadline``. And a call that creates something (a reply, an agent bot, a
webhook) must not create it twice: after an *ambiguous* failure (a timeout or 5xx that
Chatwoot may have processed anyway) the caller's :data:`Guard` looks for what the first
attempt may have made before the request is repeated. When the failure left no answer at
all (a timeout, a dropped connection, a 502/504 from a proxy), the request may have been
held up by the fault itself and land just after the link heals, at the very moment of that
look: then "not there" is only believed when a second look, ``landing_grace_s`` later,
agrees.

The token travels only in the ``api_access_token`` header; it is never logged, put in an
error or shown by ``repr``. The endpoints themselves live in :mod:`sluice.chatwoot.messages`
and :mod:`sluice.chatwoot.conversations`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Self

import httpx

from sluice import tracing
from sluice.chatwoot.errors import (
    STATUS_MEANINGS,
    ChatwootDeadlineError,
    ChatwootError,
    server_detail,
)
from sluice.chatwoot.retry import (
    AMBIGUOUS_STATUSES,
    NO_ANSWER_STATUSES,
    RETRYABLE_STATUSES,
    noting_unanswered,
    parse_retry_after,
)
from sluice.settings.config import redact_url, redact_urls_in
from sluice.tracing import service as traced

log = logging.getLogger("sluice.chatwoot")

# Looks for what an earlier attempt of a call may have created (given the deadline); the
# found object, or None when the call should be repeated.
Guard = Callable[[float | None], Awaitable[dict[str, Any] | None]]


def as_dict(value: object, what: str) -> dict[str, Any]:
    """A JSON object answer, or the error that Chatwoot answered something else."""
    if not isinstance(value, dict):
        raise ChatwootError(None, f"unexpected response for {what}: not a JSON object", False)
    return value


def as_list(value: object, what: str) -> list[dict[str, Any]]:
    """A list answer (bare or under ``payload``), its objects only."""
    if isinstance(value, dict) and "payload" in value:
        value = value["payload"]
    if not isinstance(value, list):
        raise ChatwootError(None, f"unexpected response for {what}: not a list", False)
    return [item for item in value if isinstance(item, dict)]


class ChatwootTransport:
    """Sends calls to the Application API under ``{base_url}/api/v1/accounts/{id}``.

    ``http`` lets the caller share a connection pool; a client given one does not close it.
    ``backoff_base_s``/``backoff_max_s`` shape the exponential backoff (with jitter) used
    when the server sends no Retry-After; ``landing_grace_s`` is how long the duplicate
    check waits for a second look before it re-sends after a failure without an answer
    (0: no second look); ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        base_url: str,
        api_token: str,
        *,
        timeout_s: float = 10,
        max_retries: int = 3,
        max_retry_after_s: float = 30,
        max_connections: int = 32,
        http: httpx.AsyncClient | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        landing_grace_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_token:
            raise ValueError("api_token is empty")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if landing_grace_s < 0:
            raise ValueError("landing_grace_s must be >= 0")
        self.base_url = base_url.rstrip("/")
        self._headers = {"api_access_token": api_token, "Accept": "application/json"}
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_retry_after_s = max_retry_after_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.landing_grace_s = landing_grace_s
        self._clock = clock
        self._owns_http = http is None
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        # As many connections kept alive as may be open: with httpx's default (100 open, 20
        # kept) a worker with more slots than that opened and closed connections to Chatwoot
        # all the time. Requests beyond the bound wait on the semaphore (FIFO, cheap), not in
        # httpcore's pool, which re-matches every queued request at each release.
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._http = (
            http if http is not None else httpx.AsyncClient(timeout=timeout_s, limits=limits)
        )
        self._connections = asyncio.Semaphore(max_connections)
        self._rng = random.Random()

    def __repr__(self) -> str:
        # CHATWOOT_URL may carry credentials (user:pw@, ?api_key=): never show them. Named
        # after the public class (sluice.chatwoot.client), whichever subclass this is.
        return f"ChatwootClient({redact_url(self.base_url)!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool, unless it was lent to us."""
        if self._owns_http:
            await self._http.aclose()

    def _backoff(self, failures: int, last: ChatwootError) -> float:
        """The wait before the next attempt: the server's Retry-After (capped), else an
        exponential backoff with jitter."""
        if last.retry_after is not None:
            return min(last.retry_after, self.max_retry_after_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2.0**failures))
        return ceiling * self._rng.uniform(0.5, 1.0)

    def _remaining(self, deadline: float | None, last: ChatwootError | None) -> float | None:
        """Seconds left before ``deadline`` (None: no deadline); raises when none are."""
        if deadline is None:
            return None
        remaining = deadline - self._clock()
        if remaining <= 0:
            detail = f"; last error: {last.message}" if last is not None else ""
            raise ChatwootDeadlineError(
                last.status if last else None,
                f"deadline passed before the request could be sent{detail}",
                last.retryable if last else True,
            )
        return remaining

    def _error(self, response: httpx.Response) -> ChatwootError:
        """The error for an error answer (the admin client overrides it to keep Chatwoot's
        own words)."""
        status = response.status_code
        meaning = STATUS_MEANINGS.get(status) or (
            "Chatwoot server error" if status >= 500 else "unexpected response"
        )
        detail = server_detail(response)
        message = f"{meaning} ({detail})" if detail else meaning
        retry_after = None
        if status in RETRYABLE_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
        return ChatwootError(status, message, status in RETRYABLE_STATUSES, retry_after=retry_after)

    async def _look(
        self, guard: Guard, deadline: float | None, last: ChatwootError, *, twice: bool
    ) -> dict[str, Any] | None:
        """The guard's verdict before re-sending. With ``twice`` (a failure without an
        answer), "not landed" is checked again after ``landing_grace_s``: the first
        request may have been held up by the very fault and be delivered as the link
        heals, in a race with the first look (the reliability tests saw exactly that: a
        stalled link released the old POST and the check together, and the reply was
        posted twice)."""
        landed = await guard(deadline)
        if landed is not None or not twice or self.landing_grace_s <= 0:
            return landed
        if deadline is not None and self._clock() + self.landing_grace_s >= deadline:
            raise ChatwootDeadlineError(
                last.status,
                "deadline too close to make sure the first attempt did not land; "
                f"last error: {last.message}",
                last.retryable,
            )
        await asyncio.sleep(self.landing_grace_s)
        return await guard(deadline)

    async def _send(
        self,
        method: str,
        url: str,
        json_body: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
        timeout_s: float,
        attempt: int,
    ) -> httpx.Response:
        """One HTTP request; a CLIENT span of its own while tracing is on (docs/tracing.md:
        the URL redacted, the token in a header no span records). Waiting for a free
        connection counts against ``timeout_s`` and fails as httpx's pool timeout does (the
        request was never sent)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._connections.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(
                f"no connection to Chatwoot free within {timeout_s:.1f} s"
            ) from None
        try:
            return await self._request(method, url, json_body, params, timeout_s, attempt)
        finally:
            self._connections.release()

    async def _request(
        self,
        method: str,
        url: str,
        json_body: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
        timeout_s: float,
        attempt: int,
    ) -> httpx.Response:
        if not tracing.enabled:
            return await self._http.request(
                method, url, json=json_body, params=params, headers=self._headers, timeout=timeout_s
            )
        with traced.http_client(method, redact_url(url), attempt) as span:
            response = await self._http.request(
                method, url, json=json_body, params=params, headers=self._headers, timeout=timeout_s
            )
            traced.http_status(span, response.status_code)
            return response

    async def _call(
        self,
        method: str,
        account_id: int,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        retries: int | None = None,
        guard: Guard | None = None,
    ) -> Any:
        """One logical call with retries. ``guard`` runs before a retry that follows an
        ambiguous failure; a non-None result means the first attempt did land and is
        returned instead of repeating the request."""
        url = f"{self.base_url}/api/v1/accounts/{account_id}{path}"
        attempts = 1 + (self.max_retries if retries is None else retries)
        last: ChatwootError | None = None
        ambiguous = False
        unanswered = False  # an ambiguous failure without any answer: it may land late
        for attempt in range(attempts):
            if last is not None:
                delay = self._backoff(attempt - 1, last)
                if deadline is not None and self._clock() + delay >= deadline:
                    raise noting_unanswered(
                        ChatwootDeadlineError(
                            last.status,
                            f"deadline too close to retry in {delay:.2f}s; "
                            f"last error: {last.message}",
                            last.retryable,
                        ),
                        unanswered,
                    )
                log.warning(
                    "chatwoot %s %s failed (%s), retry %d/%d in %.2fs",
                    method,
                    path,
                    last.status if last.status is not None else last.message,
                    attempt,
                    attempts - 1,
                    delay,
                )
                await asyncio.sleep(delay)
                if ambiguous and guard is not None:
                    try:
                        landed = await self._look(guard, deadline, last, twice=unanswered)
                    except ChatwootDeadlineError:
                        raise
                    except ChatwootError as exc:
                        if exc.retryable:
                            last = exc  # cannot tell yet whether it landed: do not post blind
                            continue
                        log.warning("cannot check for a landed reply (%s); retrying", exc.status)
                        guard = None
                    else:
                        if landed is not None:
                            log.info("chatwoot %s %s had landed; not repeating it", method, path)
                            return landed
            timeout = self._remaining(deadline, last)
            timeout = self.timeout_s if timeout is None else min(self.timeout_s, timeout)
            try:
                response = await self._send(method, url, json_body, params, timeout, attempt)
            except httpx.TimeoutException as exc:
                last = ChatwootError(
                    None, f"timed out after {timeout:.2f}s ({type(exc).__name__})", True
                )
                sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
                ambiguous = ambiguous or sent
                unanswered = unanswered or sent
                continue
            except httpx.TransportError as exc:
                last = ChatwootError(
                    None,
                    f"network error: {type(exc).__name__}: {redact_urls_in(str(exc))}"[:300],
                    True,
                )
                sent = not isinstance(exc, httpx.ConnectError)
                ambiguous = ambiguous or sent
                unanswered = unanswered or sent
                continue
            if response.is_success:
                if not response.content:
                    return None
                try:
                    return response.json()
                except ValueError:
                    raise ChatwootError(
                        response.status_code, "response is not JSON", False
                    ) from None
            last = self._error(response)
            if not last.retryable:
                raise noting_unanswered(last, unanswered)
            ambiguous = ambiguous or response.status_code in AMBIGUOUS_STATUSES
            unanswered = unanswered or response.status_code in NO_ANSWER_STATUSES
        assert last is not None
        raise noting_unanswered(last, unanswered)
