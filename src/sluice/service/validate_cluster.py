"""`sluice validate` on a Redis/Valkey Cluster: the checks that differ from one server's.

A cluster is healthy for Sluice when it serves every slot (``cluster_state:ok``), the master
owning the queue's slot has a replica to fail over to, and every master refuses to evict
(the queue lives on one master, but a failover or a slot migration may move it to any
other). INFO and CONFIG are per node, so these checks ask each master (docs/cluster.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

import redis.asyncio as aioredis

from sluice.keys import QueueKeys
from sluice.queue import layout as layouts
from sluice.redis.cluster import ClusterOverview, cluster_overview, node_for_key
from sluice.settings.check import Check

__all__ = ["cluster_checks", "overview_checks", "placement", "placement_check"]


def placement(
    client: aioredis.RedisCluster, parts: Sequence[QueueKeys]
) -> list[tuple[str, int, str]]:
    """(partition or "limiter", slot, host:port of its master) for each partition of a
    partitioned queue (``parts``: their keys, as its layout has them), then its limiter, as
    the client's slot map says now."""
    named = [(str(keys.partition), keys.meta) for keys in parts]
    named.append(("limiter", parts[0].limiter_prefix + "meta"))
    return [(name, client.keyslot(key), node_for_key(client, key).name) for name, key in named]


async def cluster_checks(
    client: aioredis.RedisCluster, queue: str, partitions: int = 1
) -> list[Check]:
    """The cluster's checks for queue ``queue`` (its slot, its master, every master; where
    its partitions are, when it has several)."""
    checks = overview_checks(await cluster_overview(client, QueueKeys(queue).meta))
    placement = await placement_check(client, queue, partitions)
    return checks if placement is None else [checks[0], placement, *checks[1:]]


async def placement_check(
    client: aioredis.RedisCluster, queue: str, partitions: int
) -> Check | None:
    """Each partition's slot and master, and the limiter's (docs/partitions.md); None for
    an unpartitioned queue. The recorded layout wins over ``partitions`` (SLUICE_PARTITIONS
    only records the first one); with none recorded yet, the placement a new layout would
    get (the tags :func:`sluice.queue.layout.choose_tags` picks now). Passes when the
    partitions are spread as evenly as the masters allow (counts per master differ by at
    most one); warns otherwise: partitions on one master share its CPU. That happens to a
    layout recorded before tags were chosen (whose tags follow the queue's name), or after
    failovers and slot migrations moved the slots."""
    keys = QueueKeys(queue)
    layout = await layouts.read(client, keys)
    if layout is None:
        if partitions <= 1:
            return None
        tags = [queue, *await layouts.choose_tags(client, queue, [queue], partitions)]
        parts = [keys.part(p, tag) for p, tag in enumerate(tags)]
        origin = "no layout recorded yet; a new one would place them so"
    else:
        if layout.partitions <= 1:
            return None
        parts = [layout.keys(keys, p) for p in range(layout.partitions)]
        origin = "as recorded"
    places = placement(client, parts)
    where = [f"{name}: slot {slot} on {owner}" for name, slot, owner in places]
    load = Counter({node.name: 0 for node in client.get_primaries()})
    load.update(owner for name, _, owner in places if name != "limiter")
    used = sum(1 for n in load.values() if n)
    detail = (
        f"{len(parts)} partitions on {used} of {len(load)} masters, {origin} ({'; '.join(where)})"
    )
    if max(load.values()) - min(load.values()) <= 1:
        return Check("partitions", "pass", detail)
    return Check(
        "partitions",
        "warn",
        detail + ": partitions on one master share its CPU; a layout recorded before Sluice "
        "chose tags follows the queue's name (CRC16 of the hash tags), and failovers or slot "
        "migrations move slots; a slot migration (docs/cluster.md) spreads them again",
    )


def overview_checks(view: ClusterOverview) -> list[Check]:
    state = (
        f"cluster_state {view.state}, {view.masters} masters, {view.replicas} replicas; "
        f"the queue's slot {view.slot} is on {view.owner} with {view.owner_replicas} replica(s)"
    )
    status: Literal["pass", "warn", "fail"]
    if view.state != "ok":
        status, state = "fail", state + ": some slots are not served"
    elif view.owner_replicas == 0:
        status = "warn"
        state += ": no replica to promote, so the queue stops while that master is down"
    else:
        status = "pass"
    evicting = sorted(
        f"{name} ({facts['maxmemory_policy']})"
        for name, facts in view.per_master.items()
        if facts["maxmemory_policy"] != "noeviction"
    )
    no_aof = sorted(name for name, facts in view.per_master.items() if facts["aof_enabled"] != "1")
    persistence = (
        Check(
            "persistence",
            "warn",
            f"no append-only file on {', '.join(no_aof)}: a master that restarts without a "
            "replica to take over loses its queued messages; and replication is "
            "asynchronous, so a failover can lose the last acknowledged writes "
            "(docs/cluster.md)",
        )
        if no_aof
        else Check(
            "persistence",
            "pass",
            f"append-only file on all {len(view.per_master)} masters (a failover can still "
            "lose the last writes not yet replicated: docs/cluster.md)",
        )
    )
    return [
        Check("cluster", status, state),
        Check(
            "eviction policy",
            "fail" if evicting else "pass",
            f"maxmemory-policy not noeviction on {', '.join(evicting)}: evicted keys would "
            "lose messages"
            if evicting
            else f"noeviction on all {len(view.per_master)} masters",
        ),
        persistence,
    ]
