"""The cluster fixture itself: formed, replicated, and a queue lives in one slot."""

from __future__ import annotations

from sluice.keys import QueueKeys
from sluice.testing.cluster import ValkeyCluster


def test_cluster_is_formed_with_three_masters_and_three_replicas(
    valkey_cluster: ValkeyCluster,
) -> None:
    entries = valkey_cluster.cluster_nodes()
    masters = [e for e in entries if "master" in e["flags"]]
    replicas = [e for e in entries if "slave" in e["flags"]]
    assert len(masters) == 3 and len(replicas) == 3
    assert sum(high - low + 1 for m in masters for low, high in m["slots"]) == 16384
    assert {r["master"] for r in replicas} == {m["id"] for m in masters}
    assert all(ValkeyCluster.state_ok(n) for n in valkey_cluster.nodes)


async def test_a_queue_lives_in_one_slot(valkey_cluster: ValkeyCluster) -> None:
    client = valkey_cluster.client()
    try:
        keys = QueueKeys("one-slot")
        slots = {
            client.keyslot(k)
            for k in (keys.meta, keys.ready, keys.wake, keys.job("1"), keys.lane("c"))
        }
        assert len(slots) == 1
        await client.set(keys.seq, 1)
        assert await client.get(keys.seq) == b"1"
        await client.delete(keys.seq)
    finally:
        await client.aclose()
