"""The partition layout of a partitioned queue, and the resize rule (docs/partitions.md).

The layout (``lua/layout.lua``) is N, the N before a resize still in progress, an epoch and
the most partitions the queue ever had. A conversation's *home* is ``crc32(key) % N``. While
a resize from M to N is in progress, a conversation whose home moved stays on its old
partition (``crc32(key) % M``) as long as it has a lane or a job in flight there: a producer
first offers the message to the old partition, which takes it only in that case (atomically,
in enqueue.lua), and otherwise sends it home. Once a conversation's old partition has
nothing of it, nothing is ever added there again (only a conversation with state there is
taken), so its later messages all go home, behind every earlier one. The resize ends
(:func:`finish`) when no partition holds state of a conversation whose home is elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sluice.keys import QueueKeys, partition_of
from sluice.queue.scripts import Scripts
from sluice.queue.types import as_text
from sluice.redis.cluster import RedisClient


class ResizeInProgressError(RuntimeError):
    """A resize was asked for while another one is still in progress."""


@dataclass(frozen=True)
class Layout:
    partitions: int
    previous: int  # 0: no resize in progress
    epoch: int
    highest: int

    @property
    def resizing(self) -> bool:
        return self.previous != 0

    def home(self, key: str) -> int:
        return partition_of(key, self.partitions)

    def old_home(self, key: str) -> int | None:
        """The partition a conversation may still be on during a resize (None: its home)."""
        if not self.previous:
            return None
        old = partition_of(key, self.previous)
        return None if old == self.home(key) else old


def _layout(raw: list[Any]) -> Layout:
    return Layout(*(int(x) for x in raw[1:5]))


async def read(redis: RedisClient, keys: QueueKeys) -> Layout | None:
    raw: list[Any] = await redis.hmget(keys.layout, ["partitions", "previous", "epoch", "highest"])
    if raw[2] is None:
        return None
    return Layout(*(int(x or 0) for x in raw))


async def mirror(redis: RedisClient, scripts: Scripts, keys: QueueKeys, layout: Layout) -> None:
    """Tell every partition the layout's epoch (enqueues routed by an older one are refused
    from then on)."""
    for p in range(layout.highest):
        await scripts.layout([keys.part(p).meta], ["mirror", layout.epoch])


async def init(redis: RedisClient, scripts: Scripts, keys: QueueKeys, partitions: int) -> Layout:
    """The recorded layout; records one first if there is none. A queue that held
    conversations unpartitioned (all on partition 0) starts as a resize from 1."""
    current = await read(redis, keys)
    if current is None:
        previous = 0
        if partitions != 1 and await _has_conversations(redis, keys.part(0)):
            previous = 1
        raw = await scripts.layout([keys.layout], ["init", partitions, previous])
        current = _layout(raw)
    await mirror(redis, scripts, keys, current)
    return current


async def resize(redis: RedisClient, scripts: Scripts, keys: QueueKeys, partitions: int) -> Layout:
    """Start a resize to ``partitions``; refused while one is in progress."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    raw = await scripts.layout([keys.layout], ["resize", partitions])
    layout = _layout(raw)
    if as_text(raw[0]) == "busy":
        raise ResizeInProgressError(
            f"a resize from {layout.previous} to {layout.partitions} partitions is in progress"
        )
    await mirror(redis, scripts, keys, layout)
    return layout


async def misplaced(redis: RedisClient, keys: QueueKeys, layout: Layout) -> int:
    """How many conversations still have a lane or a job in flight away from their home."""
    count = 0
    for p in range(layout.highest):
        part = keys.part(p)
        pipe = redis.pipeline(transaction=False)
        pipe.zrange(part.ready, 0, -1)
        pipe.zrange(part.delayed, 0, -1)
        pipe.hkeys(part.inflight)
        ready, delayed, inflight = await pipe.execute()
        convs = {as_text(k) for k in (*ready, *delayed, *inflight)}
        count += sum(1 for c in convs if layout.home(c) != p)
    return count


async def finish(
    redis: RedisClient, scripts: Scripts, keys: QueueKeys, layout: Layout
) -> Layout | None:
    """End the resize in progress if no conversation is left away from home; returns the
    new layout, or None if it cannot end yet (or someone else ended it)."""
    if not layout.resizing:
        return None
    # Every partition first hears of this epoch: from then on no producer routing by an
    # older layout can add a conversation anywhere, so a partition found clean stays so.
    await mirror(redis, scripts, keys, layout)
    if await misplaced(redis, keys, layout):
        return None
    raw = await scripts.layout([keys.layout], ["finish", layout.epoch])
    if as_text(raw[0]) != "ok":
        return None
    done = _layout(raw)
    await mirror(redis, scripts, keys, done)
    return done


async def _has_conversations(redis: RedisClient, part: QueueKeys) -> bool:
    pipe = redis.pipeline(transaction=False)
    pipe.zcard(part.ready)
    pipe.zcard(part.delayed)
    pipe.hlen(part.inflight)
    return any(int(n) for n in await pipe.execute())
