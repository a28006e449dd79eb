"""The Chatwoot REST client brokers use to reply, hand off, label and assign.

Why a client of our own rather than bare httpx calls: every reply races an SLA, so each call
needs one retry policy (429 and 5xx and network faults are retried, honouring Retry-After;
401/403/404/422 never are, since repeating cannot fix them) that never sleeps past the job's
``deadline``; and a reply must never be posted twice. For the latter ``send_message`` stamps
``content_attributes.sluice_reply_id`` and, before retrying after an *ambiguous* failure
(a timeout or 5xx that Chatwoot may have processed anyway), looks for that id among the
conversation's messages; ``find_reply`` exposes the same check to a job that is retried as
a whole. When the failure left no answer at all (a timeout, a dropped connection, a
502/504 from a proxy), the request may have been held up by the fault itself and land just
after the link heals, at the very moment of that check: then "not there" is only believed
when a second look, ``landing_grace_s`` later, agrees (:func:`may_still_land` tells a
retried job the same).

The token travels only in the ``api_access_token`` header; it is never logged, put in an
error or shown by ``repr``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx

from sluice.config import redact_url, redact_urls_in
from sluice.errors import SluiceError

log = logging.getLogger("sluice.chatwoot")

REPLY_ID_ATTRIBUTE: Final = "sluice_reply_id"
RETRYABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
# A 5xx from these may come after Chatwoot (or the proxy in front) already acted.
_AMBIGUOUS_STATUSES: Final = frozenset({500, 502, 504})
# A proxy in front of Chatwoot gave up on it: Chatwoot may still be handling the request.
_NO_ANSWER_STATUSES: Final = frozenset({502, 504})
# How such failures read in a job's recorded error (see may_still_land).
_NO_ANSWER_TEXT: Final = re.compile(r"timed out|network error|Chatwoot 50[24]\b")
# Appended to the error of a call whose *earlier* attempt failed without an answer, when a
# later attempt failed differently (a 429 after a timeout): the job's recorded error then
# still says that a request may land late.
MAY_STILL_LAND: Final = "an earlier attempt may still land"
# What the queue records when a turn was cut short: its lease ran out (the worker died or
# stalled) or the worker cancelled it at shutdown; a POST of that turn may be on its way.
_CUT_SHORT: Final = ("lease expired", "handed back mid-turn")
_STATUSES: Final = frozenset({"open", "resolved", "pending", "snoozed"})
_PAGE_SIZE: Final = 20  # Chatwoot's messages index returns the latest 20 per page
ONLINE_AGENTS_TTL_S: Final = 30.0

_MEANINGS: Final = {
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


def _noting_unanswered(error: ChatwootError, unanswered: bool) -> ChatwootError:
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


def _server_detail(response: httpx.Response) -> str:
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


def _reply_id_of(message: Mapping[str, Any]) -> object:
    attrs = message.get("content_attributes")
    if isinstance(attrs, str):  # some Chatwoot versions serialise it as a JSON string
        try:
            attrs = json.loads(attrs)
        except ValueError:
            return None
    return attrs.get(REPLY_ID_ATTRIBUTE) if isinstance(attrs, Mapping) else None


def _find_stamped(messages: list[dict[str, Any]], reply_id: str) -> dict[str, Any] | None:
    """The newest message stamped with ``reply_id``."""
    for message in messages[::-1]:
        if _reply_id_of(message) == reply_id:
            return message
    return None


def _as_dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ChatwootError(None, f"unexpected response for {what}: not a JSON object", False)
    return value


def _as_list(value: object, what: str) -> list[dict[str, Any]]:
    if isinstance(value, dict) and "payload" in value:
        value = value["payload"]
    if not isinstance(value, list):
        raise ChatwootError(None, f"unexpected response for {what}: not a list", False)
    return [item for item in value if isinstance(item, dict)]


Guard = Callable[[float | None], Awaitable[dict[str, Any] | None]]


class ChatwootClient:
    """Async client for the Application API under ``{base_url}/api/v1/accounts/{id}``.

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
        self._http = http if http is not None else httpx.AsyncClient(timeout=timeout_s)
        self._rng = random.Random()
        # Set once listing messages was refused (agent-bot token): find_reply then uses the
        # conversation's last message, which bots may read.
        self._listing_refused = False
        self._typing_refused = False
        self._online_cache: dict[int, tuple[float, set[int] | None]] = {}

    def __repr__(self) -> str:
        # CHATWOOT_URL may carry credentials (user:pw@, ?api_key=): never show them.
        return f"ChatwootClient({redact_url(self.base_url)!r})"

    async def __aenter__(self) -> ChatwootClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool, unless it was lent to us."""
        if self._owns_http:
            await self._http.aclose()

    # --- public API -------------------------------------------------------------------------

    async def send_message(
        self,
        account_id: int,
        conversation_id: int,
        content: str,
        *,
        private: bool = False,
        reply_id: str | None = None,
        deadline: float | None = None,
        content_attributes: Mapping[str, Any] | None = None,
        as_agent_bot: int | None = None,
    ) -> dict[str, Any]:
        """Post a reply (or a private note). With ``reply_id`` the message is stamped
        ``content_attributes.sluice_reply_id`` and retries after an ambiguous failure first
        check whether it already landed, returning that message instead of posting again.
        ``as_agent_bot`` posts it as that agent bot (``sender_type: "AgentBot"``): with a
        user token a reply would otherwise count as that user's (first reply time, reports);
        Chatwoot's message builder takes the bot as sender for outgoing messages
        (docs/chatwoot-facts.md, section 6). A bot token is the bot already."""
        attributes = dict(content_attributes or {})
        if reply_id is not None:
            attributes[REPLY_ID_ATTRIBUTE] = reply_id
        body: dict[str, Any] = {
            "content": content,
            "message_type": "outgoing",
            "private": private,
            "content_type": "text",
            "content_attributes": attributes,
        }
        if as_agent_bot is not None:
            body["sender_type"] = "AgentBot"
            body["sender_id"] = as_agent_bot
        guard: Guard | None = None
        if reply_id is not None:

            async def guard(guard_deadline: float | None) -> dict[str, Any] | None:
                return await self.find_reply(
                    account_id, conversation_id, reply_id, deadline=guard_deadline, _retries=0
                )

        result = await self._call(
            "POST",
            account_id,
            f"/conversations/{conversation_id}/messages",
            json_body=body,
            deadline=deadline,
            guard=guard,
        )
        return _as_dict(result, "send_message")

    async def list_messages(
        self,
        account_id: int,
        conversation_id: int,
        *,
        before: int | None = None,
        deadline: float | None = None,
        _retries: int | None = None,
    ) -> list[dict[str, Any]]:
        """One page (Chatwoot: the latest 20, or the 20 before message id ``before``), oldest
        first. Needs a user token: agent-bot tokens get 401."""
        params = {"before": before} if before is not None else None
        result = await self._call(
            "GET",
            account_id,
            f"/conversations/{conversation_id}/messages",
            params=params,
            deadline=deadline,
            retries=_retries,
        )
        return _as_list(result, "list_messages")

    async def find_reply(
        self,
        account_id: int,
        conversation_id: int,
        reply_id: str,
        *,
        deadline: float | None = None,
        max_pages: int = 3,
        _retries: int | None = None,
    ) -> dict[str, Any] | None:
        """The message stamped with ``reply_id``, if it was posted; the idempotency guard for
        a retried job. Searches the newest ``max_pages`` pages. With an agent-bot token (which
        may not list messages) only the conversation's last message can be checked."""
        messages = await self._newest_messages(
            account_id,
            conversation_id,
            pages=max_pages,
            deadline=deadline,
            _retries=_retries,
            until=lambda page: _find_stamped(page, reply_id) is not None,
        )
        return _find_stamped(messages, reply_id)

    async def recent_messages(
        self, account_id: int, conversation_id: int, *, pages: int = 3
    ) -> list[dict[str, Any]]:
        """The newest messages of a conversation, up to ``pages`` pages of 20. An agent-bot
        token may not list messages: then the messages the conversation itself carries (its
        latest), as :meth:`find_reply` does, rather than a 401 that would fail every retried
        turn of a bot-token deployment."""
        return await self._newest_messages(account_id, conversation_id, pages=pages)

    async def _newest_messages(
        self,
        account_id: int,
        conversation_id: int,
        *,
        pages: int,
        deadline: float | None = None,
        _retries: int | None = None,
        until: Callable[[list[dict[str, Any]]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Up to ``pages`` pages, newest first, stopping after the page ``until`` accepts;
        after a 401 for listing (a bot token, remembered), the conversation's own messages."""
        if not self._listing_refused:
            messages: list[dict[str, Any]] = []
            before: int | None = None
            try:
                for _ in range(max(1, pages)):
                    page = await self.list_messages(
                        account_id,
                        conversation_id,
                        before=before,
                        deadline=deadline,
                        _retries=_retries,
                    )
                    messages += page
                    ids = [m["id"] for m in page if isinstance(m.get("id"), int)]
                    if (until is not None and until(page)) or len(page) < _PAGE_SIZE or not ids:
                        break
                    before = min(ids)
                return messages
            except ChatwootError as exc:
                if exc.status != 401:
                    raise
                self._listing_refused = True
                log.info("listing messages refused (bot token?); checking the last message only")
        try:
            conversation = await self.get_conversation(
                account_id, conversation_id, deadline=deadline, _retries=_retries
            )
        except ChatwootError as exc:
            if exc.status != 401:
                raise
            # A bot token on a Chatwoot before 4.15 (#14655) may not read a conversation
            # either: nothing can be looked up. Posting anyway keeps the reply (at least
            # once); the fence still keeps a stale runner from posting after its lease.
            log.warning(
                "bot token may not read conversations (Chatwoot < 4.15): no duplicate look-up"
            )
            return []
        carried = conversation.get("messages")
        if not isinstance(carried, list):
            return []
        return [m for m in carried if isinstance(m, dict)]

    async def assign(
        self,
        account_id: int,
        conversation_id: int,
        *,
        assignee_id: int | None = None,
        team_id: int | None = None,
        deadline: float | None = None,
    ) -> dict[str, Any] | None:
        """Assign to an agent and/or a team (handoff). Chatwoot reads one key per request
        (``assignee_id`` wins and the team is ignored, docs/chatwoot-facts.md section 5), so
        both take two requests: the team first, then the agent. Returns what the last one
        answered: the assignee or team, or null when it unassigned (an unknown agent id
        unassigns)."""
        if assignee_id is None and team_id is None:
            raise ValueError("assign needs assignee_id or team_id")
        result: Any = None
        for body in ({"team_id": team_id}, {"assignee_id": assignee_id}):
            if next(iter(body.values())) is None:
                continue
            result = await self._call(
                "POST",
                account_id,
                f"/conversations/{conversation_id}/assignments",
                json_body=body,
                deadline=deadline,
            )
        return result if isinstance(result, dict) else None

    async def set_typing(
        self, account_id: int, conversation_id: int, on: bool, *, deadline: float | None = None
    ) -> bool:
        """Show (or stop showing) the typing indicator to the customer. Best effort: a
        version or token that may not (bots only since Chatwoot 4.12, #13705) answers 401 /
        404 once and is not asked again; any failure returns False, never raises."""
        if self._typing_refused:
            return False
        try:
            await self._call(
                "POST",
                account_id,
                f"/conversations/{conversation_id}/toggle_typing_status",
                json_body={"typing_status": "on" if on else "off"},
                deadline=deadline,
                retries=0,
            )
        except ChatwootError as exc:
            if exc.status in (401, 403, 404):
                self._typing_refused = True
                log.info("typing indicator not available (%s); not asking again", exc.status)
            return False
        return True

    async def online_agents(self, account_id: int) -> set[int] | None:
        """Ids of the account's agents whose ``availability_status`` is online (Chatwoot
        reports offline for anyone without a live session), cached briefly; None when the
        token may not list agents (a bot token: GET /agents needs a user)."""
        now = self._clock()
        cached = self._online_cache.get(account_id)
        if cached is not None and now - cached[0] < ONLINE_AGENTS_TTL_S:
            return cached[1]
        try:
            agents = await self.list_agents(account_id, deadline=now + 5)
        except ChatwootError as exc:
            if exc.status in (401, 403):
                self._online_cache[account_id] = (now, None)
                return None
            raise
        online = {
            int(a["id"])
            for a in agents
            if isinstance(a.get("id"), int) and a.get("availability_status") == "online"
        }
        self._online_cache[account_id] = (now, online)
        return online

    async def toggle_status(
        self,
        account_id: int,
        conversation_id: int,
        status: str,
        *,
        snoozed_until: int | None = None,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """Set the status: ``open`` is the bot-to-human handoff, ``pending`` gives it back to
        the bot, ``resolved`` closes, ``snoozed`` until ``snoozed_until`` (Unix seconds).
        Returns ``{"success", "current_status", "conversation_id"}``."""
        if status not in _STATUSES:
            raise ValueError(f"status must be one of {sorted(_STATUSES)}")
        body: dict[str, Any] = {"status": status}
        if snoozed_until is not None:
            body["snoozed_until"] = snoozed_until
        result = _as_dict(
            await self._call(
                "POST",
                account_id,
                f"/conversations/{conversation_id}/toggle_status",
                json_body=body,
                deadline=deadline,
            ),
            "toggle_status",
        )
        payload = result.get("payload")
        return payload if isinstance(payload, dict) else result

    async def set_labels(
        self,
        account_id: int,
        conversation_id: int,
        labels: Sequence[str],
        *,
        deadline: float | None = None,
    ) -> list[str]:
        """Replace the conversation's labels (Chatwoot replaces, it does not add)."""
        result = await self._call(
            "POST",
            account_id,
            f"/conversations/{conversation_id}/labels",
            json_body={"labels": list(labels)},
            deadline=deadline,
        )
        return self._labels(result)

    async def get_labels(
        self, account_id: int, conversation_id: int, *, deadline: float | None = None
    ) -> list[str]:
        """The conversation's labels."""
        result = await self._call(
            "GET", account_id, f"/conversations/{conversation_id}/labels", deadline=deadline
        )
        return self._labels(result)

    async def get_conversation(
        self,
        account_id: int,
        conversation_id: int,
        *,
        deadline: float | None = None,
        _retries: int | None = None,
    ) -> dict[str, Any]:
        """The conversation (status, assignee, labels, its last message)."""
        result = await self._call(
            "GET",
            account_id,
            f"/conversations/{conversation_id}",
            deadline=deadline,
            retries=_retries,
        )
        return _as_dict(result, "get_conversation")

    async def list_agents(
        self, account_id: int, *, deadline: float | None = None
    ) -> list[dict[str, Any]]:
        """The account's agents (for human routing). Needs a user token."""
        result = await self._call("GET", account_id, "/agents", deadline=deadline)
        return _as_list(result, "list_agents")

    # --- machinery ---------------------------------------------------------------------------

    @staticmethod
    def _labels(result: object) -> list[str]:
        payload = result.get("payload") if isinstance(result, dict) else result
        if not isinstance(payload, list):
            raise ChatwootError(None, "unexpected labels response: not a list", False)
        return [label for label in payload if isinstance(label, str)]

    def _backoff(self, failures: int, last: ChatwootError) -> float:
        if last.retry_after is not None:
            return min(last.retry_after, self.max_retry_after_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2.0**failures))
        return ceiling * self._rng.uniform(0.5, 1.0)

    def _remaining(self, deadline: float | None, last: ChatwootError | None) -> float | None:
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
        status = response.status_code
        meaning = _MEANINGS.get(status) or (
            "Chatwoot server error" if status >= 500 else "unexpected response"
        )
        detail = _server_detail(response)
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
                    raise _noting_unanswered(
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
                response = await self._http.request(
                    method,
                    url,
                    json=json_body,
                    params=params,
                    headers=self._headers,
                    timeout=timeout,
                )
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
                raise _noting_unanswered(last, unanswered)
            ambiguous = ambiguous or response.status_code in _AMBIGUOUS_STATUSES
            unanswered = unanswered or response.status_code in _NO_ANSWER_STATUSES
        assert last is not None
        raise _noting_unanswered(last, unanswered)
