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
(``Assignment.degraded``). Load is "live conversations currently assigned", released when a
conversation is resolved (:meth:`Assigner.release`) or when it goes idle.

Idle expiry: why and how
------------------------
Many conversations are never resolved (the customer just leaves, an agent forgets to
close it), and a load freed only on ``resolved`` would then grow for ever until every broker
looked full. So an assignment lives exactly as long as the conversation is alive: it was
assigned or confirmed (each turn's sticky :meth:`Assigner.assign`) within ``idle_ttl_s``,
or the conversation's state in :mod:`sluice.service.conversations` (which expires after the same
TTL of silence, :data:`sluice.keys.CONVERSATION_TTL_S`, a week) still exists. Expiry *with*
the state rather than a TTL on hash fields: Redis cannot expire fields of a hash on the
versions Sluice supports (6.2+), and a load counter cannot notice a key expiring, so the
scripts expire assignments themselves and decrement the load in the same atomic step.

``broker:seen`` (ZSET conversation -> last known alive, Redis clock) indexes assignments by
age, so finding idle ones never scans them all. Every assignment script first forgets up
to 100 assignments idle past the TTL whose conversation state is gone (``lua/lib/
expire_idle.lua``); one whose state still exists is looked at again when that state would
expire. :meth:`Assigner.loads` runs the same step, so a reader never sees stale load.
Assignments written before ``broker:seen`` existed are indexed a page per call (an HSCAN
cursor in ``broker:adopt``) and then age like the others. We chose this over recounting
loads from the assignment hash on every call: a recount is O(assignments) per turn,
while the index makes each call O(expired + log n) and keeps load equal to the number of
live assignments by construction.

Keys (all under the queue's prefix ``sluice:{queue}:``, so they share its cluster slot):
``broker:assignments`` (HASH conversation key -> broker), ``broker:loads`` (HASH broker ->
load), ``broker:rr`` (HASH kind -> round-robin counter), ``broker:seen`` and
``broker:adopt`` (above).

The assigner only records the assignment. Telling Chatwoot (``POST .../assignments`` with
the human's ``agent_id``) is the pipeline's job, because only it knows the account and
conversation ids; :attr:`Assignment.changed` tells it when to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, overload

from redis.commands.core import AsyncScript

from sluice.broker.config import Broker, BrokerKind
from sluice.keys import CONVERSATION_TTL_S, QueueKeys
from sluice.redis import lua
from sluice.redis.cluster import RedisClient

__all__ = [
    "ASSIGNMENT_SCRIPTS",
    "Assigner",
    "Assignment",
    "AssignmentRule",
    "assignment_script_source",
]

ASSIGNMENT_SCRIPTS = ("assign", "release", "loads")

AssignmentRule = Literal["sticky", "least_loaded", "round_robin", "forced"]


def assignment_script_source(name: str) -> str:
    """The source of one assignment script (``lua/<name>.lua`` of ``sluice.broker``), its
    includes expanded by the package's one Lua loader, :mod:`sluice.redis.lua`."""
    if name not in ASSIGNMENT_SCRIPTS:
        raise KeyError(name)
    return lua.script_source("sluice.broker", name)


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
    ``idle_ttl_s`` is how long an assignment outlives the last sign of its conversation
    (see the module docstring); it defaults to the conversation state's TTL so both end
    together.
    """

    def __init__(
        self,
        redis: RedisClient,
        queue_keys: QueueKeys,
        brokers: Sequence[Broker],
        *,
        available: Callable[[], Awaitable[set[str]]] | None = None,
        idle_ttl_s: float = CONVERSATION_TTL_S,
    ) -> None:
        if not brokers:
            raise ValueError("an Assigner needs at least one broker")
        if not idle_ttl_s > 0:
            raise ValueError("idle_ttl_s must be positive")
        names = [b.name for b in brokers]
        if len(set(names)) != len(names):
            raise ValueError(f"broker names must be unique: {names}")
        self.redis = redis
        self.keys = queue_keys
        self.brokers: tuple[Broker, ...] = tuple(brokers)
        self._by_name = {b.name: b for b in brokers}
        self._available = available
        self.assignments_key = queue_keys.broker_assignments
        self.loads_key = queue_keys.broker_loads
        self.rr_key = queue_keys.broker_round_robin
        self.seen_key = queue_keys.broker_seen
        self.adopt_key = queue_keys.broker_adopt
        self.idle_ttl_ms = max(1, round(idle_ttl_s * 1000))
        self._state_prefix = queue_keys.conversations
        # KEYS 1-4 of every assignment script (lua/lib/keys.lua).
        self._common_keys = [self.assignments_key, self.loads_key, self.seen_key, self.adopt_key]
        self._scripts: dict[str, AsyncScript] = lua.register_scripts(
            redis, "sluice.broker", ASSIGNMENT_SCRIPTS
        )

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
        result = await self._scripts["release"](keys=self._common_keys, args=[key])
        name = _text(result)
        return name or None

    async def assignment(self, key: str) -> str | None:
        """The name of the broker now holding ``key``, if any (no side effects)."""
        value = await self.redis.hget(self.assignments_key, key)
        return None if value is None else _text(value)

    async def loads(self) -> dict[str, int]:
        """Live conversations held by each configured broker (0 for those holding none);
        assignments idle past the TTL are forgotten first, so none is counted."""
        flat: list[Any] = await self._scripts["loads"](
            keys=self._common_keys, args=[self._state_prefix, self.idle_ttl_ms]
        )
        stored = {_text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
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
        args.extend([self._state_prefix, self.idle_ttl_ms])
        result = await self._scripts["assign"](keys=[*self._common_keys, self.rr_key], args=args)
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
