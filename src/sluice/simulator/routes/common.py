"""What every REST handler shares: Chatwoot's error format, token auth with the agent-bot
allow-list of the configured version, and lookups of accounts and conversations."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import Request

from sluice.simulator.state import Conversation, Principal

if TYPE_CHECKING:
    from sluice.simulator.core import ChatwootSimulator

NOT_FOUND = {"error": "Resource could not be found"}
BOTS_REFUSED = "Access to this endpoint is not authorized for bots"
PREFIX = "/api/v1/accounts/{account_id}"
CONVERSATION = PREFIX + "/conversations/{conversation_id}"


class SimHTTPError(Exception):
    """An error response in Chatwoot's format."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers


def invalid(message: str, *attributes: str) -> SimHTTPError:
    """422 the way Rails renders ``ActiveRecord::RecordInvalid``."""
    return SimHTTPError(422, {"message": message, "attributes": list(attributes)})


def token_of(request: Request) -> str | None:
    """The ``api_access_token`` header (AccessTokenAuthHelper; ``Api-Access-Token`` with a
    hyphen reaches Rails as the same header). ``Authorization: Bearer`` is not accepted:
    that is only PR #15941, open (facts §4)."""
    token = request.headers.get("api_access_token") or request.headers.get("api-access-token")
    return token or None


def as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


class Api:
    """Auth and lookups bound to one simulator."""

    def __init__(self, sim: ChatwootSimulator) -> None:
        self.sim = sim

    def token_kind(self, request: Request) -> str:
        """For the call log: ``user``, ``bot``, ``invalid`` or ``none``."""
        token = token_of(request)
        if token is None:
            return "none"
        principal = self.sim.store.principal(token)
        return "invalid" if principal is None else principal.kind

    def authenticate(self, request: Request, controller: str, action: str) -> Principal:
        """The token's owner. A bot token passes only for the (controller, action) pairs of
        BOT_ACCESSIBLE_ENDPOINTS in this version (``validate_bot_access_token!``, facts §4)."""
        token = token_of(request)
        if token is None:
            raise SimHTTPError(
                401, {"errors": ["You need to sign in or sign up before continuing."]}
            )
        principal = self.sim.store.principal(token)
        if principal is None:
            raise SimHTTPError(401, {"error": "Invalid Access Token"})
        if principal.kind == "bot" and not self.sim.profile.bot_may(controller, action):
            raise SimHTTPError(401, {"error": BOTS_REFUSED})
        return principal

    def account_of(self, raw: str) -> int:
        account_id = as_int(raw)
        if account_id is None or account_id not in self.sim.store.accounts:
            raise SimHTTPError(404, NOT_FOUND)
        return account_id

    def conversation_of(self, raw_account: str, raw_conversation: str) -> Conversation:
        account_id = self.account_of(raw_account)
        display_id = as_int(raw_conversation)
        conversation = (
            self.sim.store.conversation(account_id, display_id) if display_id is not None else None
        )
        if conversation is None:
            raise SimHTTPError(404, NOT_FOUND)
        return conversation

    @staticmethod
    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            parsed: object = {}
        else:
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise SimHTTPError(400, {"error": "Invalid JSON in request body"}) from None
        if not isinstance(parsed, dict):
            raise SimHTTPError(400, {"error": "Request body must be a JSON object"})
        request.state.sim_body = parsed
        return parsed
