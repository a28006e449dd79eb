"""The message endpoints: posting a reply exactly once, and reading a conversation's
messages back.

A reply must never be posted twice. ``send_message`` stamps
``content_attributes.sluice_reply_id`` and, before retrying after an *ambiguous* failure
(a timeout or 5xx that Chatwoot may have processed anyway), looks for that id among the
conversation's messages (the transport's guard, :mod:`sluice.chatwoot.transport`);
``find_reply`` exposes the same check to a job that is retried as a whole. When the failure
left no answer at all, "not there" is only believed after a second look
(:func:`sluice.chatwoot.retry.may_still_land` tells a retried job the same).

Reading messages follows Chatwoot's messages index: the latest 20 per page, older pages by
``before``; an agent-bot token may not list them (401), so after that refusal the
conversation's own (latest) messages are read instead, which bots may read from Chatwoot
4.15 (#14655).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from sluice.chatwoot.conversations import ConversationEndpoints
from sluice.chatwoot.errors import ChatwootError
from sluice.chatwoot.transport import Guard, as_dict, as_list

log = logging.getLogger("sluice.chatwoot")

REPLY_ID_ATTRIBUTE: Final = "sluice_reply_id"
_PAGE_SIZE: Final = 20  # Chatwoot's messages index returns the latest 20 per page


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


class MessageEndpoints(ConversationEndpoints):
    """Posting and reading messages; see the module docstring. Built on the conversation
    endpoints because a bot token's only way to read messages is the conversation itself."""

    # Set on the instance once listing messages was refused (agent-bot token): find_reply
    # then uses the conversation's last message, which bots may read.
    _listing_refused: bool = False

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
        return as_dict(result, "send_message")

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
        return as_list(result, "list_messages")

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
