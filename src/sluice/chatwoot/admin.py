"""The Chatwoot calls that set Sluice up and check the setup: the version, the token's owner,
inboxes, agent bots and account webhooks.

A subclass of :class:`~sluice.chatwoot.client.ChatwootClient` (same token handling, retry
policy and redaction) used by ``sluice chatwoot setup`` and ``sluice validate``; the reply
path never needs it. What each endpoint does and who may call it follows real Chatwoot:

- ``GET /api``: ``ApiController#index`` renders ``{version, timestamp}`` without
  authentication (``Chatwoot.config[:version]``).
- ``GET /api/v1/profile``: ``ProfilesController#show``, the token's user with ``accounts[]``
  (id, name, role). Not in the bot allow-list: a bot token gets 401 "Access to this endpoint
  is not authorized for bots" (facts §4). The body also carries the user's own
  ``access_token``: never print it.
- Account endpoints answer 401 "You are not authorized to access this account" to a user who
  is not a member, 401 "You are not authorized to do this action" when the role may not
  (Pundit; creating bots and webhooks, linking a bot to an inbox and listing webhooks are
  administrator-only) and 404 for an unknown account (``Account.find``).
- Agent bots (facts §9): ``GET/POST /agent_bots`` (index lists global and account bots; the
  JSON carries ``secret`` for administrators from 4.13 and ``access_token`` since PR #14830),
  ``GET /inboxes/{id}/agent_bot`` (``{"agent_bot": ...}``) and ``POST
  /inboxes/{id}/set_agent_bot`` ``{"agent_bot": id}`` (empty 200).
- Account webhooks (facts §9): ``GET /webhooks`` (``{"payload": {"webhooks": [...]}}``),
  ``POST /webhooks`` and ``PATCH /webhooks/{id}`` with ``{"webhook": {url, subscriptions,
  name}}`` (``{"payload": {"webhook": ...}}``, with ``secret`` from 4.11.2). The URL is unique
  per account; subscriptions must be a non-empty subset of the allowed events (422).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal, Self

import httpx

from sluice.chatwoot.client import ChatwootClient
from sluice.chatwoot.errors import ChatwootError, server_detail
from sluice.settings.config import redact_urls_in

# Chatwoot's own texts for its 401s (AccessTokenAuthHelper, Accounts::BaseController,
# RequestExceptionHandler), by what they mean for the caller.
Refusal = Literal["invalid_token", "bot_token", "not_member", "not_admin"]
_REFUSALS: Final[tuple[tuple[str, Refusal], ...]] = (
    ("invalid access token", "invalid_token"),
    ("not authorized for bots", "bot_token"),
    ("not authorized to access this account", "not_member"),
    ("not authorized to do this action", "not_admin"),
)


class ChatwootRefusal(ChatwootError):
    """A Chatwoot error answer with Chatwoot's own words in ``detail``."""

    def __init__(
        self,
        status: int | None,
        message: str,
        retryable: bool,
        *,
        retry_after: float | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(status, message, retryable, retry_after=retry_after)
        self.detail = detail


def refusal(exc: ChatwootError) -> Refusal | None:
    """What a 401 (or 403) says about the token: invalid, a bot's, not a member of the
    account, or a role that may not do this."""
    if exc.status not in (401, 403):
        return None
    text = exc.message.lower()
    for phrase, kind in _REFUSALS:
        if phrase in text:
            return kind
    return "not_admin" if exc.status == 403 else None


def said(exc: ChatwootError) -> str:
    """What Chatwoot answered, in its own words when it gave some."""
    if isinstance(exc, ChatwootRefusal) and exc.detail:
        return exc.detail
    return exc.message


def _payload(value: object) -> object:
    return value.get("payload") if isinstance(value, dict) and "payload" in value else value


def _objects(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class ChatwootAdminClient(ChatwootClient):
    """Setup and inspection calls; see the module docstring."""

    async def __aenter__(self) -> Self:
        return self

    def _error(self, response: httpx.Response) -> ChatwootError:
        base = super()._error(response)
        return ChatwootRefusal(
            base.status,
            base.message,
            base.retryable,
            retry_after=base.retry_after,
            detail=server_detail(response),
        )

    async def _unscoped(self, path: str, *, token: bool = True) -> Any:
        """One GET outside ``/api/v1/accounts/{id}`` (no retries: these are probes)."""
        headers = self._headers if token else {"Accept": "application/json"}
        try:
            response = await self._http.get(
                f"{self.base_url}{path}", headers=headers, timeout=self.timeout_s
            )
        except httpx.TimeoutException as exc:
            raise ChatwootError(
                None, f"timed out after {self.timeout_s:g}s ({type(exc).__name__})", True
            ) from None
        except httpx.TransportError as exc:
            text = f"network error: {type(exc).__name__}: {redact_urls_in(str(exc))}"
            raise ChatwootError(None, text[:300], True) from None
        if not response.is_success:
            raise self._error(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ChatwootError(response.status_code, "response is not JSON", False) from None

    # --- instance and token --------------------------------------------------------------

    async def server_version(self) -> str | None:
        """The version ``GET /api`` reports (no token sent), or None when it reports none."""
        body = await self._unscoped("/api", token=False)
        version = body.get("version") if isinstance(body, dict) else None
        return version if isinstance(version, str) and version.strip() else None

    async def profile(self) -> dict[str, Any]:
        """The token's user (``GET /api/v1/profile``); a bot token gets 401. The body holds
        the user's own access token: callers must not print it."""
        body = await self._unscoped("/api/v1/profile")
        if not isinstance(body, dict):
            raise ChatwootError(None, "unexpected response for profile: not a JSON object", False)
        return body

    async def probe_account_as_bot(self, account_id: int) -> None:
        """``GET /conversations/0`` (no such conversation): raises the 401 an agent bot gets
        for an account none of whose inboxes it serves, or the 404 of a missing account or
        conversation. Bots may read conversations only from 4.15 (PR #14655); before, 401
        "not authorized for bots"."""
        await self._call("GET", account_id, "/conversations/0", retries=0)

    # --- inboxes and agent bots ----------------------------------------------------------

    async def list_inboxes(self, account_id: int) -> list[dict[str, Any]]:
        """The account's inboxes (an agent sees those assigned to them)."""
        return _objects(_payload(await self._call("GET", account_id, "/inboxes", retries=1)))

    async def inbox_agent_bot(self, account_id: int, inbox_id: int) -> dict[str, Any] | None:
        """The agent bot linked to an inbox, or None."""
        body = await self._call("GET", account_id, f"/inboxes/{inbox_id}/agent_bot", retries=1)
        bot = body.get("agent_bot") if isinstance(body, dict) else None
        return bot if isinstance(bot, dict) and bot.get("id") is not None else None

    async def set_inbox_agent_bot(self, account_id: int, inbox_id: int, bot_id: int | None) -> None:
        """Link an agent bot to an inbox (None unlinks); repeating it is harmless."""
        await self._call(
            "POST",
            account_id,
            f"/inboxes/{inbox_id}/set_agent_bot",
            json_body={"agent_bot": bot_id},
        )

    async def list_agent_bots(self, account_id: int) -> list[dict[str, Any]]:
        """The account's agent bots and the global ones."""
        return _objects(_payload(await self._call("GET", account_id, "/agent_bots", retries=1)))

    async def create_agent_bot(
        self, account_id: int, *, name: str, outgoing_url: str, description: str = ""
    ) -> dict[str, Any]:
        """Create an agent bot. After an ambiguous failure (a timeout, a 500) the retry first
        looks for a bot with this ``outgoing_url``, so a bot is not created twice."""

        async def landed(_deadline: float | None) -> dict[str, Any] | None:
            for bot in await self.list_agent_bots(account_id):
                if bot.get("outgoing_url") == outgoing_url:
                    return bot
            return None

        body = {"name": name, "description": description, "outgoing_url": outgoing_url}
        result = await self._call("POST", account_id, "/agent_bots", json_body=body, guard=landed)
        if not isinstance(result, dict):
            raise ChatwootError(None, "unexpected response for create agent bot", False)
        return result

    # --- account webhooks ----------------------------------------------------------------

    async def list_webhooks(self, account_id: int) -> list[dict[str, Any]]:
        """The account's webhooks (administrators only)."""
        body = _payload(await self._call("GET", account_id, "/webhooks", retries=1))
        return _objects(body.get("webhooks") if isinstance(body, dict) else body)

    async def create_webhook(
        self, account_id: int, *, url: str, subscriptions: Sequence[str], name: str | None = None
    ) -> dict[str, Any]:
        """Create an account webhook (the retry after an ambiguous failure first looks for
        it by URL, which Chatwoot keeps unique per account)."""

        async def landed(_deadline: float | None) -> dict[str, Any] | None:
            for webhook in await self.list_webhooks(account_id):
                if webhook.get("url") == url:
                    return webhook
            return None

        webhook: dict[str, Any] = {"url": url, "subscriptions": list(subscriptions)}
        if name:
            webhook["name"] = name
        result = await self._call(
            "POST", account_id, "/webhooks", json_body={"webhook": webhook}, guard=landed
        )
        return self._webhook_of(result, "create webhook")

    async def update_webhook(
        self,
        account_id: int,
        webhook_id: int,
        *,
        url: str,
        subscriptions: Sequence[str],
        name: str | None = None,
    ) -> dict[str, Any]:
        """Change a webhook's subscriptions (and name)."""
        webhook: dict[str, Any] = {"url": url, "subscriptions": list(subscriptions)}
        if name:
            webhook["name"] = name
        result = await self._call(
            "PATCH", account_id, f"/webhooks/{webhook_id}", json_body={"webhook": webhook}
        )
        return self._webhook_of(result, "update webhook")

    @staticmethod
    def _webhook_of(result: object, what: str) -> dict[str, Any]:
        body = _payload(result)
        if isinstance(body, dict) and isinstance(body.get("webhook"), dict):
            return dict(body["webhook"])
        if isinstance(body, dict) and "url" in body:
            return body
        raise ChatwootError(None, f"unexpected response for {what}", False)
