"""`sluice serve --workers 2` on the real cluster with a partitioned queue: the two API
processes share the intake's dedupe through the cluster, and the messages they accept land
on every partition (each on its own master, docs/partitions.md)."""

from __future__ import annotations

import json
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

from sluice import Queue
from sluice.testing.cluster import ValkeyCluster

from ..api.test_api_processes import serve_two
from ..api.test_intake_spool import message
from ..integration.test_partitions import delete_partitioned_keys

PARTS = 3


async def test_two_api_processes_on_a_cluster(
    valkey_cluster: ValkeyCluster, tmp_path: Path
) -> None:
    client = valkey_cluster.client()
    name = f"apic-{uuid.uuid4().hex[:10]}"
    queue = Queue(name, redis=client, partitions=PARTS)
    env = {"REDIS_CLUSTER": "true", "SLUICE_PARTITIONS": str(PARTS)}
    try:
        async with (
            serve_two(valkey_cluster.url, queue, tmp_path, env) as served,
            AsyncExitStack() as stack,
        ):
            (pid_a, a), (pid_b, b) = (await served.two_processes(stack)).items()
            assert pid_a != pid_b
            # One webhook delivered to each process: queued once.
            body = message(9401, "hello")
            assert await served.post(a, body, "dlv-c-9401") == "queued"
            assert await served.post(b, body, "dlv-c-9401") == "duplicate"
            # Thirty more conversations, alternately through each process.
            for i in range(30):
                payload = json.loads(message(9500 + i, "hi"))
                payload["conversation"]["id"] += 100 + i
                raw = json.dumps(payload).encode()
                assert await served.post((a, b)[i % 2], raw, f"dlv-c-{9500 + i}") == "queued"
            waiting = [c["waiting"] for c in await queue.partition_counts()]
            assert sum(waiting) == 31
            assert all(n > 0 for n in waiting), waiting  # every partition got messages
    finally:
        await delete_partitioned_keys(client, name)
        await client.aclose()
