"""What the cluster tests share: a bounded wait on real state, and how many clients the
cluster's nodes hold blocked (an idle worker's BLPOPs), so a test awaits that state instead
of sleeping for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from sluice.testing.cluster import ValkeyCluster


async def wait_until(predicate: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def blocked_clients(cluster: ValkeyCluster) -> int:
    """Clients the live nodes hold blocked now (INFO clients, ``blocked_clients``: a BLPOP
    waiting for its list)."""
    total = 0
    for node in cluster.live_nodes():
        with node.client() as client:
            total += int(client.info("clients")["blocked_clients"])
    return total


async def blocked_on_cluster(cluster: ValkeyCluster, at_least: int) -> None:
    """Until the live nodes hold ``at_least`` blocked clients."""

    async def enough() -> bool:
        return blocked_clients(cluster) >= at_least

    await wait_until(enough)
