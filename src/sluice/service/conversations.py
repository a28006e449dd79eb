"""What Sluice remembers about each Chatwoot conversation: whether a human has taken it
over (the bot then stays silent until it returns to `pending`), its last known status,
and the recent turns the AI broker sees as history.

One small hash per conversation under the queue's prefix, plus a capped history list;
both expire after a week of silence (``TTL_S``). A conversation's broker assignment ends
with them (:mod:`sluice.broker.assignment` checks these keys, named by
:attr:`sluice.keys.QueueKeys.conversations`), so a conversation that is never resolved
does not hold its broker's capacity for ever.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sluice.keys import CONVERSATION_TTL_S, QueueKeys
from sluice.redis.cluster import RedisClient

TTL_S = CONVERSATION_TTL_S
HISTORY_TURNS = 20


@dataclass(frozen=True)
class ConversationState:
    status: str | None
    human: bool
    human_agent: int | None
    handoff_reason: str | None
    returned_to_bot: bool = False
    handoff_at_ms: float = 0.0  # when a human took over (0: never)
    answer_open: bool = False  # CHATWOOT_ANSWER_OPEN: see Conversations
    # When Sluice last delivered an answer into it (epoch ms, 0: never): a `waiting_since`
    # older than that is stale (sluice.deadlines.decide).
    answered_at_ms: float = 0.0

    @property
    def bot_may_answer(self) -> bool:
        """The bot acts only while no human handles the conversation and it is the bot's:
        `pending` (contract rule 4; in a bot inbox `open` means handed to humans), or an
        `open` one nobody handles when ``answer_open`` is set (an inbox without an agent
        bot, where every conversation starts open)."""
        if self.human:
            return False
        return self.status in (None, "pending") or (self.answer_open and self.status == "open")


class Conversations:
    """``ttl_s`` is how long state outlives the conversation's last event (tests shorten
    it; the broker assigner's idle TTL should match it, see :mod:`sluice.broker.assignment`)."""

    def __init__(
        self,
        redis: RedisClient,
        keys: QueueKeys,
        *,
        ttl_s: float = TTL_S,
        answer_open: bool = False,
    ) -> None:
        if not ttl_s > 0:
            raise ValueError("ttl_s must be positive")
        self.answer_open = answer_open
        self.redis = redis
        self.keys = keys
        self.ttl_ms = max(1, round(ttl_s * 1000))

    def _key(self, key: str) -> str:
        return self.keys.conversation(key)

    def _history_key(self, key: str) -> str:
        return self.keys.conversation_history(key)

    async def get(self, key: str) -> ConversationState:
        raw = await self.redis.hgetall(self._key(key))
        data = {_text(k): _text(v) for k, v in raw.items()}
        agent = data.get("human_agent")
        return ConversationState(
            status=data.get("status") or None,
            human=data.get("human") == "1",
            human_agent=int(agent) if agent and agent.isdigit() else None,
            handoff_reason=data.get("handoff_reason") or None,
            returned_to_bot=data.get("returned") == "1",
            handoff_at_ms=float(data.get("handoff_at") or 0.0),
            answer_open=self.answer_open,
            answered_at_ms=float(data.get("answered_at") or 0.0),
        )

    async def _set(self, key: str, mapping: dict[str, str | int | float]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        values: dict[Any, Any] = {**mapping, "updated": time.time()}
        pipe.hset(self._key(key), mapping=values)
        pipe.pexpire(self._key(key), self.ttl_ms)
        await pipe.execute()

    async def set_status(self, key: str, status: str) -> None:
        """A status from Chatwoot. `pending` hands the conversation back to the bot."""
        mapping: dict[str, str | int | float] = {"status": status}
        if status == "pending":
            if (await self.get(key)).human:
                mapping["returned"] = "1"  # the next turn goes back to an AI broker
            mapping.update(human="0", human_agent="", handoff_reason="")
        await self._set(key, mapping)

    async def resolved(self, key: str) -> None:
        """Resolved: whoever had it, a customer who writes again starts afresh (Chatwoot
        reopens a bot inbox's conversation as `pending`, the bot's)."""
        await self._set(
            key,
            {"status": "resolved", "human": "0", "human_agent": "", "handoff_reason": ""},
        )

    async def bot_resumed(self, key: str) -> None:
        await self._set(key, {"returned": "0"})

    async def human_took_over(self, key: str, agent_id: int | None, reason: str) -> None:
        await self._set(
            key,
            {
                "human": "1",
                "human_agent": "" if agent_id is None else agent_id,
                "handoff_reason": reason,
                "handoff_at": time.time() * 1000,
            },
        )

    async def answered(self, key: str, at_ms: float) -> None:
        """Sluice delivered an answer into the conversation at ``at_ms`` (epoch ms)."""
        await self._set(key, {"answered_at": at_ms})

    async def forget(self, key: str) -> None:
        await self.redis.delete(self._key(key), self._history_key(key))

    async def history(self, key: str) -> list[dict[str, str]]:
        raw = await self.redis.lrange(self._history_key(key), 0, -1)
        return [json.loads(item) for item in raw]

    async def remember(
        self, key: str, user: str, assistant: str, *, answered_at_ms: float | None = None
    ) -> None:
        """Append one turn (customer lines and our reply) to the bounded history; with
        ``answered_at_ms``, also when the reply was delivered (:meth:`answered`), in the
        same round trip."""
        pipe = self.redis.pipeline(transaction=True)
        if answered_at_ms is not None:
            pipe.hset(self._key(key), mapping={"answered_at": answered_at_ms})
            pipe.pexpire(self._key(key), self.ttl_ms)
        hk = self._history_key(key)
        pipe.rpush(
            hk,
            json.dumps({"role": "user", "content": user}),
            json.dumps({"role": "assistant", "content": assistant}),
        )
        pipe.ltrim(hk, -2 * HISTORY_TURNS, -1)
        pipe.pexpire(hk, self.ttl_ms)
        await pipe.execute()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
