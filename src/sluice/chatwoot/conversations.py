"""The conversation endpoints: handoff (assignment and status), labels, the typing
indicator, and who the account's agents are.

What Chatwoot does with each request, and which token may make it, follows real Chatwoot:
an assignment reads one key per request (``assignee_id`` wins, docs/chatwoot-facts.md
section 5); labels are replaced, not added; bots may show typing only from Chatwoot 4.12
(#13705); ``GET /agents`` needs a user token. Where a version or token refuses something
best-effort (typing, the online agents), the refusal is remembered so it is not asked
again on every turn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from typing import Any, Final

from sluice.chatwoot.errors import ChatwootError
from sluice.chatwoot.transport import ChatwootTransport, as_dict, as_list

log = logging.getLogger("sluice.chatwoot")

_STATUSES: Final = frozenset({"open", "resolved", "pending", "snoozed"})
ONLINE_AGENTS_TTL_S: Final = 30.0


def _labels(result: object) -> list[str]:
    """The label names of a labels answer (``{"payload": [...]}`` or a bare list)."""
    payload = result.get("payload") if isinstance(result, dict) else result
    if not isinstance(payload, list):
        raise ChatwootError(None, "unexpected labels response: not a list", False)
    return [label for label in payload if isinstance(label, str)]


class ConversationEndpoints(ChatwootTransport):
    """Calls on a conversation and the account's agents; see the module docstring."""

    # Set on the instance once a version or token refused the typing indicator.
    _typing_refused: bool = False

    @cached_property
    def _online_cache(self) -> dict[int, tuple[float, set[int] | None]]:
        """account id -> (when it was read, its online agents), one per client."""
        return {}

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
        result = as_dict(
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
        return _labels(result)

    async def get_labels(
        self, account_id: int, conversation_id: int, *, deadline: float | None = None
    ) -> list[str]:
        """The conversation's labels."""
        result = await self._call(
            "GET", account_id, f"/conversations/{conversation_id}/labels", deadline=deadline
        )
        return _labels(result)

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
        return as_dict(result, "get_conversation")

    async def list_agents(
        self, account_id: int, *, deadline: float | None = None
    ) -> list[dict[str, Any]]:
        """The account's agents (for human routing). Needs a user token."""
        result = await self._call("GET", account_id, "/agents", deadline=deadline)
        return as_list(result, "list_agents")
