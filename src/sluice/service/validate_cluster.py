"""`sluice validate` on a Redis/Valkey Cluster: the checks that differ from one server's.

A cluster is healthy for Sluice when it serves every slot (``cluster_state:ok``), the master
owning the queue's slot has a replica to fail over to, and every master refuses to evict
(the queue lives on one master, but a failover or a slot migration may move it to any
other). INFO and CONFIG are per node, so these checks ask each master (docs/cluster.md).
"""

from __future__ import annotations

from typing import Literal

import redis.asyncio as aioredis

from sluice.keys import QueueKeys
from sluice.queue import layout as layouts
from sluice.redis.cluster import ClusterOverview, cluster_overview, node_for_key
from sluice.settings.check import Check

__all__ = ["cluster_checks", "overview_checks", "placement", "placement_check"]


def placement(
    client: aioredis.RedisCluster, keys: QueueKeys, partitions: int
) -> list[tuple[str, int, str]]:
    """(partition or "limiter", slot, host:port of its master) for each of a partitioned
    queue's partitions, then its limiter, as the client's slot map says now."""
    named = [(str(p), keys.part(p).meta) for p in range(partitions)]
    named.append(("limiter", keys.limiter_prefix + "meta"))
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
    only records the first one). Warns when the partitions share masters the cluster could
    spread them over: their hash tags fall where CRC16 puts them, and partitions on one
    master share its CPU."""
    keys = QueueKeys(queue)
    layout = await layouts.read(client, keys)
    count = layout.partitions if layout is not None else partitions
    if count <= 1:
        return None
    places = placement(client, keys, count)
    where = [f"{name}: slot {slot} on {owner}" for name, slot, owner in places]
    used = len({owner for name, _, owner in places if name != "limiter"})
    masters = len(client.get_primaries())
    detail = f"{count} partitions on {used} of {masters} masters ({'; '.join(where)})"
    if used >= min(count, masters):
        return Check("partitions", "pass", detail)
    return Check(
        "partitions",
        "warn",
        detail + ": partitions on one master share its CPU; their slots follow the queue's "
        "name (CRC16 of the hash tags), so another name or a slot migration spreads them",
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
