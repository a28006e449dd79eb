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

The layout also records each partition's hash tag when the partition is created (by
:func:`init` or a :func:`resize` that adds partitions) and never changes it: its keys live
under that tag. On a cluster the tags are chosen so that the partitions land on different
masters, as evenly as the masters allow (:func:`choose_tags`); on one server, and in every
layout written before tags were recorded, partition p's tag is the plain ``name#p``. A
partition's keys are :meth:`Layout.keys`, the one place that turns a layout into keys.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sluice.keys import QueueKeys, partition_of, partition_tag, salted_tag
from sluice.queue import fairness
from sluice.queue.scripts import Scripts
from sluice.queue.types import as_text
from sluice.redis.cluster import RedisClient, is_cluster, node_for_key, primaries

#: How many salts :func:`choose_tags` tries for one partition before it settles for a master
#: that is not the least loaded (each salt is a fresh CRC16: with M masters, a try misses
#: the wanted ones with probability at most (M - 1) / M, so this is never reached in practice).
MAX_SALT = 10_000


class ResizeInProgressError(RuntimeError):
    """A resize was asked for while another one is still in progress."""


@dataclass(frozen=True)
class Layout:
    partitions: int
    previous: int  # 0: no resize in progress
    epoch: int
    highest: int
    #: The recorded hash tag of each partition, by index ('' where none is recorded:
    #: partition 0, and every partition of a layout written before tags were recorded).
    tags: tuple[str, ...] = ()

    def tag(self, name: str, partition: int) -> str:
        """Partition ``partition``'s hash tag: the recorded one, else the plain one."""
        recorded = self.tags[partition] if 0 < partition < len(self.tags) else ""
        return recorded or partition_tag(name, partition)

    def keys(self, base: QueueKeys, partition: int) -> QueueKeys:
        """The keys of one partition of ``base``'s queue, under the tag this layout has
        for it. Every process derives partition keys here, so all agree on them."""
        return base.part(partition, self.tag(base.name, partition))

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
    """layout.lua's answer: status, the four numbers, then the tags of partitions 1, 2, ..."""
    partitions, previous, epoch, highest = (int(x) for x in raw[1:5])
    tags = ("", *(as_text(t) for t in raw[5:]))
    return Layout(partitions, previous, epoch, highest, tags)


async def read(redis: RedisClient, keys: QueueKeys) -> Layout | None:
    """The recorded layout (None: none yet); one HGETALL of a hash of a few fields."""
    raw: dict[Any, Any] = await redis.hgetall(keys.layout)
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    if "epoch" not in fields:
        return None
    highest = int(fields.get("highest") or 0)
    return Layout(
        int(fields.get("partitions") or 0),
        int(fields.get("previous") or 0),
        int(fields["epoch"]),
        highest,
        tags=("", *(fields.get(f"tag:{p}", "") for p in range(1, highest))),
    )


async def choose_tags(
    redis: RedisClient, name: str, existing: Sequence[str], count: int
) -> list[str]:
    """Hash tags for partitions ``len(existing)`` to ``count - 1`` of queue ``name``, given
    the tags of the partitions it has (``existing``, partition 0's first).

    On one server every slot is on the same node: the plain tags. On a cluster each new
    partition goes to a master with the fewest partitions of this queue so far (counting
    the existing ones where the slot map puts them now): the plain tag ``name#p`` when it
    lands on one, else ``name~k#p`` with the smallest salt k that does. The result spreads
    the partitions over the masters as evenly as they allow (their counts differ by at most
    one when the existing ones did). The choice is made once, when the partition is
    created; a later failover or slot migration moves slots, not tags, and
    ``sluice validate`` reports the placement then."""
    first = len(existing)
    if not is_cluster(redis):
        return [partition_tag(name, p) for p in range(first, count)]
    await redis.initialize()  # the slot map (a no-op once the client has it)

    def owner(tag: str) -> str:
        return node_for_key(redis, f"sluice:{{{tag}}}:meta").name

    load: Counter[str] = Counter({node.name: 0 for node in primaries(redis)})
    load.update(owner(tag) for tag in existing)
    chosen = []
    for p in range(first, count):
        fewest = min(load.values())
        tag = partition_tag(name, p)
        for salt in range(MAX_SALT):
            candidate = salted_tag(name, p, salt)
            if load[owner(candidate)] == fewest:
                tag = candidate
                break
        load[owner(tag)] += 1
        chosen.append(tag)
    return chosen


async def mirror(redis: RedisClient, scripts: Scripts, keys: QueueKeys, layout: Layout) -> None:
    """Tell every partition the layout's epoch (enqueues routed by an older one are refused
    from then on)."""
    for p in range(layout.highest):
        await scripts.layout([layout.keys(keys, p).meta], ["mirror", layout.epoch])


async def init(redis: RedisClient, scripts: Scripts, keys: QueueKeys, partitions: int) -> Layout:
    """The recorded layout; records one first if there is none, with the hash tags of its
    partitions (:func:`choose_tags`). A queue that held conversations unpartitioned (all on
    partition 0) starts as a resize from 1."""
    current = await read(redis, keys)
    if current is None:
        previous = 0
        if partitions != 1 and await _has_conversations(redis, keys.part(0)):
            previous = 1
        tags = await choose_tags(redis, keys.name, [keys.name], max(partitions, previous))
        raw = await scripts.layout([keys.layout], ["init", partitions, previous, 1, *tags])
        current = _layout(raw)
    await mirror(redis, scripts, keys, current)
    return current


async def resize(redis: RedisClient, scripts: Scripts, keys: QueueKeys, partitions: int) -> Layout:
    """Start a resize to ``partitions``; refused while one is in progress. Partitions the
    queue never had get tags chosen as :func:`init` chooses them; the others keep theirs."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    current = await read(redis, keys)
    first = max(1, current.highest) if current is not None else 1
    existing = [current.tag(keys.name, p) for p in range(first)] if current else [keys.name]
    tags = await choose_tags(redis, keys.name, existing, partitions)
    raw = await scripts.layout([keys.layout], ["resize", partitions, first, *tags])
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
        part = layout.keys(keys, p)
        pipe = redis.pipeline(transaction=False)
        pipe.zrange(part.ready, 0, -1)
        pipe.zrange(part.delayed, 0, -1)
        pipe.hkeys(part.inflight)
        ready, delayed, inflight = await pipe.execute()
        held = await fairness.held_lanes(redis, part)  # tenant fairness: out of `ready`
        convs = {as_text(k) for k in (*ready, *delayed, *inflight, *held)}
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
    pipe.zcard(part.fair_parked)  # lanes held back by tenant fairness
    return any(int(n) for n in await pipe.execute())
