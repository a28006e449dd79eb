"""Alert state, history and operator commands in Redis.

Keys (all under the queue's prefix, so a queue's alerts live in its hash slot):

* ``alerts:state``    the engine's whole state as one JSON string (small: one entry per rule);
* ``alerts:history``  a stream of :class:`~sluice.alerts.model.HistoryEntry`, capped with
  ``XADD … MAXLEN ~ 1000`` so it never grows without bound;
* ``alerts:commands`` a list of pending acknowledgements and silences;
* ``alerts:leader``   the leader lease (:mod:`sluice.monitor.leader`).

Why commands go through a list instead of the API editing the state: the state has one
writer, the leader. If the API process (which is usually not the leader) read, changed and
wrote the state, it would race with the leader's own read-evaluate-write cycle and one of
the two writes would be lost (an ack that silently disappears, or a transition undone).
Instead the API appends a command and the leader applies it at its next evaluation, at
most ``SLUICE_ALERT_EVALUATION_INTERVAL_S`` later. Commands are removed only in the same
transaction that saves the state they changed, so a leader dying in between makes the next
leader apply them again, which is harmless (ack and silence are idempotent).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeAlias

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from sluice.alerts.engine import AlertEngine
from sluice.alerts.model import HistoryEntry
from sluice.keys import QueueKeys
from sluice.monitor.leader import LeaderLease

__all__ = ["AlertCommand", "AlertStore", "CommandOp"]

log = logging.getLogger("sluice.alerts")

CommandOp: TypeAlias = Literal["ack", "silence", "unsilence"]
_OPS: tuple[CommandOp, ...] = ("ack", "silence", "unsilence")


@dataclass(frozen=True)
class AlertCommand:
    """An operator action waiting for the leader: ``target`` is a fingerprint or rule name."""

    op: CommandOp
    target: str
    by: str
    requested_at: float
    until: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> AlertCommand:
        data = json.loads(text)
        op = data.get("op")
        if op not in _OPS:
            raise ValueError(f"unknown alert command {op!r}")
        until = data.get("until")
        return cls(
            op=op,
            target=str(data["target"]),
            by=str(data["by"]),
            requested_at=float(data["requested_at"]),
            until=None if until is None else float(until),
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AlertStore:
    """One queue's alert keys; safe to use from any process (only the leader writes state)."""

    def __init__(
        self,
        redis: aioredis.Redis | aioredis.RedisCluster,
        queue_keys: QueueKeys,
        *,
        history_maxlen: int = 1000,
        commands_cap: int = 1000,
    ) -> None:
        self.redis = redis
        self.queue_keys = queue_keys
        self.history_maxlen = history_maxlen
        self.commands_cap = commands_cap
        self.state_key = queue_keys.alerts_state
        self.history_key = queue_keys.alerts_history
        self.commands_key = queue_keys.alerts_commands
        self.lease_key = queue_keys.alerts_leader

    # -- state and history (the leader) ------------------------------------------------

    async def load(self) -> str | None:
        """The saved engine state (JSON), or None if no leader ever saved one."""
        value: Any = await self.redis.get(self.state_key)
        return None if value is None else _text(value)

    async def save(self, engine: AlertEngine) -> None:
        """Save the engine's state unconditionally (see :meth:`commit` for the fenced write)."""
        await self.commit(engine)

    async def record(self, entries: Sequence[HistoryEntry]) -> None:
        """Append history entries to the capped stream."""
        if not entries:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            self._queue_history(pipe, entries)
            await pipe.execute()

    async def commit(
        self,
        engine: AlertEngine,
        entries: Sequence[HistoryEntry] = (),
        applied_commands: int = 0,
        fence: LeaderLease | None = None,
    ) -> bool:
        """Save state, append history and drop applied commands in one transaction.

        With ``fence``, the write happens only if that lease's holder still holds the lease
        (WATCH on the lease key): a leader that lost its lease while evaluating cannot
        overwrite the state of its successor. Returns False when fenced out.
        """
        state = engine.state_to_json()
        async with self.redis.pipeline(transaction=True) as pipe:
            if fence is not None:
                await pipe.watch(fence.key)
                current: Any = await pipe.get(fence.key)
                if current is None or _text(current) != fence.holder_id:
                    return False  # leaving the block resets the pipeline and unwatches
                pipe.multi()  # type: ignore[no-untyped-call]
            pipe.set(self.state_key, state)
            self._queue_history(pipe, entries)
            if applied_commands > 0:
                pipe.ltrim(self.commands_key, applied_commands, -1)
            try:
                await pipe.execute()
            except WatchError:
                return False
        return True

    async def history(self, limit: int = 100) -> list[HistoryEntry]:
        """The newest ``limit`` history entries, newest first."""
        rows: Any = await self.redis.xrevrange(self.history_key, count=limit)
        entries: list[HistoryEntry] = []
        for _id, fields in rows:
            raw = fields.get(b"entry", fields.get("entry"))
            if raw is None:
                continue
            try:
                entries.append(HistoryEntry.from_dict(json.loads(_text(raw))))
            except (ValueError, KeyError, TypeError):
                log.warning("skipping an unreadable alert history entry %s", _text(_id))
        return entries

    def _queue_history(self, pipe: Any, entries: Sequence[HistoryEntry]) -> None:
        for entry in entries:
            pipe.xadd(
                self.history_key,
                {"entry": json.dumps(entry.to_dict(), allow_nan=False)},
                maxlen=self.history_maxlen,
                approximate=True,
            )

    # -- commands (any process -> the leader) -------------------------------------------

    async def request_ack(self, fingerprint: str, by: str) -> None:
        """Ask the leader to acknowledge an alert (fingerprint or rule name)."""
        await self._push(AlertCommand("ack", fingerprint, by, time.time()))

    async def request_silence(self, target: str, until: float, by: str) -> None:
        """Ask the leader to silence an alert (fingerprint or rule name) until ``until``."""
        if not math.isfinite(until) or until <= time.time():
            raise ValueError("a silence must end at a finite time in the future")
        await self._push(AlertCommand("silence", target, by, time.time(), until))

    async def request_unsilence(self, target: str, by: str) -> None:
        """Ask the leader to end a silence now."""
        await self._push(AlertCommand("unsilence", target, by, time.time()))

    async def pending_commands(self, limit: int = 100) -> tuple[list[AlertCommand], int]:
        """Up to ``limit`` oldest commands, and how many list entries they span.

        The count includes unreadable entries (skipped with a warning), so passing it to
        :meth:`commit` removes them too instead of retrying them forever.
        """
        raw: Any = await self.redis.lrange(self.commands_key, 0, limit - 1)
        commands: list[AlertCommand] = []
        for item in raw:
            try:
                commands.append(AlertCommand.from_json(item))
            except (ValueError, KeyError, TypeError):
                log.warning("dropping an unreadable alert command")
        return commands, len(raw)

    async def _push(self, command: AlertCommand) -> None:
        if not command.by:
            raise ValueError("an alert command needs the name of who asked for it")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(self.commands_key, command.to_json())
            # Without a leader nobody consumes them: keep the newest, never grow forever.
            pipe.ltrim(self.commands_key, -self.commands_cap, -1)
            await pipe.execute()
