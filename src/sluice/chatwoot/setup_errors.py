"""Why ``sluice chatwoot setup`` cannot go on, and what to do about it.

Setup talks to a Chatwoot it has never seen, with a token it cannot inspect beforehand, so
most failures are a wrong URL, a wrong account or a token that may not do the step. Chatwoot
says which in its 401 texts (a bot's token, not a member, not an administrator; see
:func:`sluice.chatwoot.admin.refusal`); :func:`explain` turns each into a problem and the
fix, so the command ends with a readable message, never a traceback.
"""

from __future__ import annotations

from typing import Final

from sluice.chatwoot.admin import refusal, said
from sluice.chatwoot.errors import ChatwootError

ADMIN_TOKEN_FIX: Final = (
    "use the access token of an administrator of the account: in Chatwoot, avatar → "
    "Profile settings → Access Token (--token or CHATWOOT_API_TOKEN)"
)


class SetupError(Exception):
    """Setup cannot go on: ``problem`` says what happened, ``fix`` what to do."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


def explain(exc: ChatwootError, *, account_id: int | None, action: str) -> SetupError:
    """A Chatwoot error as a problem and what to do about it."""
    account = f"account {account_id}" if account_id is not None else "the account"
    if exc.status is None:
        return SetupError(
            f"cannot reach Chatwoot ({exc.message})",
            "check --chatwoot-url / CHATWOOT_URL: the address you open Chatwoot at in a "
            "browser (https://chat.example.com), reachable from this machine",
        )
    kind = refusal(exc)
    if kind == "invalid_token":
        return SetupError(f"Chatwoot refused the token (401: {said(exc)})", ADMIN_TOKEN_FIX)
    if kind == "bot_token":
        return SetupError(
            f"the token is an agent bot's, which may not {action} (401: {said(exc)})",
            ADMIN_TOKEN_FIX,
        )
    if kind == "not_member":
        return SetupError(
            f"the token's user is not a member of {account} (401: {said(exc)})",
            "check --account-id / CHATWOOT_ACCOUNT_ID: the number after /app/accounts/ in "
            "the dashboard's address",
        )
    if kind == "not_admin":
        return SetupError(
            f"the token's user may not {action} in {account} ({exc.status}: {said(exc)})",
            ADMIN_TOKEN_FIX + "; Settings → Agents shows each person's role",
        )
    if exc.status == 401:
        return SetupError(f"Chatwoot answered 401 ({said(exc)})", ADMIN_TOKEN_FIX)
    if exc.status == 404:
        return SetupError(
            f"Chatwoot answered 404 to {action}: {account} does not exist ({said(exc)})",
            "check --account-id / CHATWOOT_ACCOUNT_ID (the number after /app/accounts/ in the "
            "dashboard's address) and that --chatwoot-url is Chatwoot's base URL",
        )
    if exc.status == 422:
        return SetupError(
            f"Chatwoot rejected the request to {action} (422: {said(exc)})",
            "check --public-url (an http(s) URL) and --name; the message above is Chatwoot's",
        )
    return SetupError(
        f"Chatwoot answered {exc.status} to {action} ({said(exc)})",
        "look at Chatwoot's logs, then run the command again (it is idempotent)",
    )
