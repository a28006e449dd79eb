"""Which broker answers which conversation, decided atomically in Redis.

Every worker process on every machine assigns conversations, so the decision and the load
bookkeeping must be one atomic step: ``lua/assign.lua`` reads the current assignment and
the loads and writes the result in one EVALSHA, so 200 concurrent first messages can never
put 201 conversations on a broker of capacity 200 while another broker has room.

Rules (first match wins; see the script header for the exact wording):

1. **sticky** — a conversation keeps its broker while that broker is still configured (and
   of the requested kind): the customer keeps talking to the same agent.
2. **least loaded** — among *available* brokers of the kind with free capacity, the one
   holding the fewest conversations (ties: configuration order).
3. **round robin** — everyone is full: the next available broker in turn, over capacity,
   because an unassigned customer is worse than a busy agent.

If no broker of the kind is available at all, rules 2-3 run over every broker of the kind
(``Assignment.degraded``). Load is "conversations currently assigned", released when a
conversation is resolved (:meth:`Assigner.release`).

Keys (all under the queue's prefix ``sluice:{queue}:``, so they share its cluster slot):
``broker:assignments`` (HASH conversation key -> broker), ``broker:loads`` (HASH broker ->
load), ``broker:rr`` (HASH kind -> round-robin counter).

The assigner only records the assignment. Telling Chatwoot (``POST .../assignments`` with
the human's ``agent_id``) is the pipeline's job, because only it knows the account and
conversation ids; :attr:`Assignment.changed` tells it when to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal, cast, overload

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from sluice.broker.config import Broker, BrokerKind
from sluice.queue.keys import QueueKeys

__all__ = [
    "ASSIGNMENT_SCRIPTS",
    "Assigner",
    "Assignment",
    "AssignmentRule",
    "assignment_script_source",
]

ASSIGNMENT_SCRIPTS = ("assign", "release")

AssignmentRule = Literal["sticky", "least_loaded", "round_robin", "forced"]


@cache
def assignment_script_source(name: str) -> str:
    """The source of one assignment script, from the ``sluice.broker`` package's ``lua/``."""
    if name not in ASSIGNMENT_SCRIPTS:
        raise KeyError(name)
    return (resources.files("sluice.broker") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Assignment:
    """The outcome of one assignment: who, by which rule, and who had it before."""

    broker: Broker
    rule: AssignmentRule
    previous: str | None
    degraded: bool = False

    @property
    def changed(self) -> bool:
        """Whether the conversation moved to a new broker (then a human must be told)."""
        return self.previous != self.broker.name


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Assigner:
    """Assigns conversations of one queue to ``brokers``.

    ``available`` (optional) returns the names of brokers that may take *new*
    conversations right now (e.g. the Chatwoot agents whose availability is ``online``);
    None means every broker is available. It is consulted on every non-sticky decision.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        queue_keys: QueueKeys,
        brokers: Sequence[Broker],
        *,
        available: Callable[[], Awaitable[set[str]]] | None = None,
    ) -> None:
        if not brokers:
            raise ValueError("an Assigner needs at least one broker")
        names = [b.name for b in brokers]
        if len(set(names)) != len(names):
            raise ValueError(f"broker names must be unique: {names}")
        self.redis = redis
        self.keys = queue_keys
        self.brokers: tuple[Broker, ...] = tuple(brokers)
        self._by_name = {b.name: b for b in brokers}
        self._available = available
        self.assignments_key = queue_keys.prefix + "broker:assignments"
        self.loads_key = queue_keys.prefix + "broker:loads"
        self.rr_key = queue_keys.prefix + "broker:rr"
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(assignment_script_source(name))
            for name in ASSIGNMENT_SCRIPTS
        }

    def broker(self, name: str) -> Broker:
        """The configured broker called ``name`` (KeyError if none)."""
        return self._by_name[name]

    @overload
    async def assign(self, key: str, *, kind: None = None) -> Broker: ...
    @overload
    async def assign(self, key: str, *, kind: BrokerKind) -> Broker | None: ...

    async def assign(self, key: str, *, kind: BrokerKind | None = None) -> Broker | None:
        """The broker of conversation ``key``, assigning one if needed (see the rules).

        ``kind="human"`` is the handoff: an AI assignment is replaced by the least-loaded
        human, while a conversation already with a human stays with them. With a kind and
        no configured broker of that kind the result is None and the assignment is left as
        it was: the caller falls back (for a handoff: Chatwoot's own routing). Without a
        kind there is always a broker (an Assigner has at least one).
        """
        found = await self.assign_detailed(key, kind=kind)
        return None if found is None else found.broker

    @overload
    async def assign_detailed(self, key: str, *, kind: None = None) -> Assignment: ...
    @overload
    async def assign_detailed(self, key: str, *, kind: BrokerKind) -> Assignment | None: ...

    async def assign_detailed(
        self, key: str, *, kind: BrokerKind | None = None
    ) -> Assignment | None:
        """:meth:`assign`, also saying which rule decided and who had the conversation."""
        return await self._run(key, kind=kind, forced=None)

    async def reassign(self, key: str, broker_name: str) -> Broker:
        """Move conversation ``key`` to the named broker, whatever its load (an operator or
        a handler chose the agent); the previous broker's capacity is freed."""
        if broker_name not in self._by_name:
            raise KeyError(f"unknown broker {broker_name!r}")
        moved = await self._run(key, kind=None, forced=broker_name)
        assert moved is not None  # a forced move always has its broker
        return moved.broker

    async def release(self, key: str) -> str | None:
        """Forget the conversation's assignment (it was resolved); returns the broker that
        held it. Idempotent."""
        self._check_key(key)
        result = await self._scripts["release"](
            keys=[self.assignments_key, self.loads_key], args=[key]
        )
        name = _text(result)
        return name or None

    async def assignment(self, key: str) -> str | None:
        """The name of the broker now holding ``key``, if any (no side effects)."""
        value = await self.redis.hget(self.assignments_key, key)
        return None if value is None else _text(value)

    async def loads(self) -> dict[str, int]:
        """Conversations held by each configured broker (0 for those holding none)."""
        raw: dict[Any, Any] = await self.redis.hgetall(self.loads_key)
        stored = {_text(k): int(v) for k, v in raw.items()}
        return {b.name: max(0, stored.get(b.name, 0)) for b in self.brokers}

    async def _run(
        self, key: str, *, kind: BrokerKind | None, forced: str | None
    ) -> Assignment | None:
        self._check_key(key)
        available = None if self._available is None else await self._available()
        args: list[str | int] = [key, kind or "", forced or "", len(self.brokers)]
        for b in self.brokers:
            flag = 1 if available is None or b.name in available else 0
            args.extend([b.name, b.kind, b.capacity, flag])
        result = await self._scripts["assign"](
            keys=[self.assignments_key, self.loads_key, self.rr_key], args=args
        )
        name, rule, previous, degraded = (_text(v) for v in result)
        if rule == "none":
            return None  # no configured broker of the kind (only possible with a kind)
        return Assignment(
            broker=self._by_name[name],
            rule=cast(AssignmentRule, rule),
            previous=previous or None,
            degraded=degraded == "1",
        )

    @staticmethod
    def _check_key(key: str) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError("conversation key must be a non-empty string")
