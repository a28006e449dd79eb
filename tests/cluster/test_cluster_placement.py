"""Where a partitioned queue's partitions land on the test cluster (docs/partitions.md, "Where
the partitions land on a cluster"): the layout records a hash tag per partition, chosen when
the partition is created so that the partitions use different masters; a layout recorded
before tags were is read with the plain tags; a resize keeps the tags it finds.

Each test picks a *crowded* queue name, one whose plain tags ({name}, {name#1}, ...) put
two partitions on one master, so a placement by CRC16 alone would fail its assertions."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from redis.crc import key_slot

from sluice import Queue
from sluice.keys import QueueKeys, partition_tag
from sluice.queue.partitioned import PartitionedQueue
from sluice.service import validate
from sluice.settings.config import load_settings
from sluice.testing.cluster import ValkeyCluster

from ..integration.test_partitions import delete_partitioned_keys, keys_on

PARTS = 3


def master_port(cluster: ValkeyCluster, keys: QueueKeys) -> int:
    """The port of the master serving a partition's slot, as the cluster itself says."""
    return cluster.master_of_slot(key_slot(keys.meta.encode())).port


def plain_ports(cluster: ValkeyCluster, name: str, partitions: int = PARTS) -> list[int]:
    return [master_port(cluster, QueueKeys(name, p)) for p in range(partitions)]


def crowded_name(cluster: ValkeyCluster, prefix: str) -> str:
    """A fresh queue name whose first three plain tags are on fewer than three masters."""
    while True:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        if len(set(plain_ports(cluster, name))) < PARTS:
            return name


def engine_ports(cluster: ValkeyCluster, queue: Queue) -> list[int]:
    return [master_port(cluster, engine.keys) for engine in queue.engines]


def master_ports(cluster: ValkeyCluster) -> set[int]:
    """The three masters, whichever nodes they are now (one per slot range)."""
    return {cluster.master_of_slot(slot).port for slot in (0, 8000, 16383)}


def per_master(cluster: ValkeyCluster, ports: Sequence[int]) -> list[int]:
    """How many of ``ports`` each master has (zeros included), smallest first."""
    counts = Counter({port: 0 for port in master_ports(cluster)})
    counts.update(ports)
    return sorted(counts.values())


async def test_three_partitions_of_a_crowded_name_use_three_masters(
    valkey_cluster: ValkeyCluster, cluster_client: Any
) -> None:
    name = crowded_name(valkey_cluster, "tpl")
    queue = Queue(name, redis=cluster_client, partitions=PARTS)
    try:
        layout = await queue.check_layout()
        assert len(set(engine_ports(valkey_cluster, queue))) == PARTS, (
            [e.keys.tag for e in queue.engines],
            engine_ports(valkey_cluster, queue),
        )
        # Partition 0 keeps the queue's own tag; the others' are recorded in the layout.
        recorded = await cluster_client.hgetall(queue.keys.layout)
        assert queue.engines[0].keys.prefix == f"sluice:{{{name}}}:"
        for p in (1, 2):
            tag = queue.engines[p].keys.tag
            assert recorded[f"tag:{p}".encode()].decode() == tag == layout.tags[p]
            assert tag == partition_tag(name, p) or tag.startswith(f"{name}~")
            assert tag.endswith(f"#{p}")  # enqueue.lua names the partition in its ids by it
        # The keys are where the tags say: each conversation's lane on its partition's master.
        ids = {}
        for p in range(PARTS):
            key = keys_on(p, 1)[0]
            ids[p] = await queue.enqueue(key, {"p": p})
            node = valkey_cluster.master_of_slot(key_slot(queue.engines[p].keys.meta.encode()))
            with node.client() as direct:
                assert direct.llen(queue.engines[p].keys.lane(key)) == 1
        assert ids[1].startswith("1_") and ids[2].startswith("2_")
        # Another process derives the same keys from the layout alone.
        other_client = valkey_cluster.client()
        try:
            other = Queue(name, redis=other_client, partitions=PARTS)
            for p, job_id in ids.items():
                record = await other.get_job(job_id)
                assert record is not None and record.payload == {"p": p}
            assert [e.keys for e in other.engines] == [e.keys for e in queue.engines]
            assert (await other.counts())["waiting"] == PARTS
        finally:
            await other_client.aclose()
    finally:
        await delete_partitioned_keys(cluster_client, name)


async def test_validate_passes_for_the_default_queue_with_three_partitions(
    valkey_cluster: ValkeyCluster, cluster_client: Any
) -> None:
    """`inbound`'s plain tags are all on the middle master of an evenly split cluster; its
    recorded tags are not, and `sluice validate` says so before and after the layout."""
    name = "inbound"
    assert len(set(plain_ports(valkey_cluster, name))) == 1
    env = {"REDIS_URL": valkey_cluster.url, "SLUICE_QUEUE": name, "SLUICE_PARTITIONS": "3"}
    try:
        before = {c.name: c for c in await validate.run(load_settings(env), valkey_cluster.url)}
        assert before["partitions"].outcome == "pass", before["partitions"].detail
        assert before["partitions"].detail.startswith("3 partitions on 3 of 3 masters")
        assert "no layout recorded yet" in before["partitions"].detail

        queue = Queue(name, redis=cluster_client, partitions=PARTS)
        await queue.check_layout()
        assert len(set(engine_ports(valkey_cluster, queue))) == PARTS
        after = {c.name: c for c in await validate.run(load_settings(env), valkey_cluster.url)}
        placement = after["partitions"]
        assert placement.outcome == "pass", placement.detail
        assert placement.detail.startswith("3 partitions on 3 of 3 masters, as recorded")
        for p, engine in enumerate(queue.engines):
            slot = key_slot(engine.keys.meta.encode())
            port = valkey_cluster.master_of_slot(slot).port
            assert f"{p}: slot {slot} on 127.0.0.1:{port}" in placement.detail
        # What validate predicted before the layout existed is what was recorded.
        assert before["partitions"].detail.split("(")[1] == placement.detail.split("(")[1]
    finally:
        await delete_partitioned_keys(cluster_client, name)


async def test_a_layout_recorded_before_tags_keeps_its_keys(
    valkey_cluster: ValkeyCluster, cluster_client: Any
) -> None:
    """A layout an older process wrote (no ``tag:<p>`` fields) keeps the plain tags: the
    jobs enqueued under them are found, validate warns about the shared master, and a
    resize puts only the new partitions on the least loaded masters."""
    name = crowded_name(valkey_cluster, "tlg")
    keys = QueueKeys(name)
    await cluster_client.hset(
        keys.layout, mapping={"partitions": PARTS, "previous": 0, "epoch": 1, "highest": PARTS}
    )
    queue = Queue(name, redis=cluster_client, partitions=PARTS)
    try:
        await queue.check_layout()
        assert [e.keys for e in queue.engines] == [QueueKeys(name, p) for p in range(PARTS)]
        ids = [await queue.enqueue(keys_on(p, 1)[0], {"p": p}) for p in range(PARTS)]
        for p in range(PARTS):
            lane = QueueKeys(name, p).lane(keys_on(p, 1)[0])
            node = valkey_cluster.master_of_slot(key_slot(lane.encode()))
            with node.client() as direct:
                assert direct.exists(lane)

        env = {"REDIS_URL": valkey_cluster.url, "SLUICE_QUEUE": name, "SLUICE_PARTITIONS": "3"}
        checks = {c.name: c for c in await validate.run(load_settings(env), valkey_cluster.url)}
        assert checks["partitions"].outcome == "warn", checks["partitions"].detail
        assert "share its CPU" in checks["partitions"].detail

        old = plain_ports(valkey_cluster, name)
        await queue.resize(5)
        recorded = await cluster_client.hgetall(keys.layout)
        assert b"tag:1" not in recorded and b"tag:2" not in recorded  # old ones untouched
        assert {b"tag:3", b"tag:4"} <= set(recorded)
        ports = engine_ports(valkey_cluster, queue)
        assert ports[:PARTS] == old
        # Each new partition went to a master with the fewest partitions at the time.
        for p in (3, 4):
            load = Counter({port: 0 for port in master_ports(valkey_cluster)})
            load.update(ports[:p])
            assert load[ports[p]] == min(load.values()), (p, ports, load)

        fresh = Queue(name, redis=cluster_client, partitions=PARTS)
        for p, job_id in enumerate(ids):
            record = await fresh.get_job(job_id)
            assert record is not None and record.payload == {"p": p}
    finally:
        await delete_partitioned_keys(cluster_client, name)


async def test_a_resize_keeps_the_tags_and_spreads_new_partitions(
    valkey_cluster: ValkeyCluster, cluster_client: Any
) -> None:
    name = crowded_name(valkey_cluster, "trs")
    queue = Queue(name, redis=cluster_client, partitions=PARTS)
    assert isinstance(queue, PartitionedQueue)
    try:
        await queue.check_layout()
        tags = [e.keys.tag for e in queue.engines]
        await queue.resize(2)
        assert await queue.finish_resize()  # empty: ends at once
        layout = await queue.resize(4)
        assert [layout.tag(name, p) for p in range(PARTS)] == tags
        assert [e.keys.tag for e in queue.engines[:PARTS]] == tags
        assert per_master(valkey_cluster, engine_ports(valkey_cluster, queue)) == [1, 1, 2]

        other = Queue(name, redis=cluster_client, partitions=2)
        await other.check_layout()
        assert [e.keys for e in other.engines] == [e.keys for e in queue.engines]
    finally:
        await delete_partitioned_keys(cluster_client, name)
