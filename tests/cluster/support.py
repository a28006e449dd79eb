"""What the cluster tests share: a bounded wait on real state, and how many clients the
cluster's nodes hold blocked (an idle worker's BLPOPs), so a test awaits that state instead
of sleeping for it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from sluice import Worker
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


class Progress:
    """A count tasks wait on (messages acknowledged, say): a fault test injects its fault
    once the load is flowing, and stops once enough went through afterwards, instead of
    sleeping a guessed while."""

    def __init__(self) -> None:
        self.count = 0
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []

    def step(self) -> None:
        self.count += 1
        for target, future in self._waiting:
            if self.count >= target and not future.done():
                future.set_result(None)

    async def reach(self, target: int, within_s: float = 30.0) -> None:
        """Until the count is at least ``target``."""
        if self.count >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((target, future))
        try:
            async with asyncio.timeout(within_s):
                await future
        finally:
            self._waiting.remove((target, future))


async def stop_load(
    stop: asyncio.Event,
    producers: list[asyncio.Task[None]],
    worker: Worker,
    worker_task: asyncio.Task[None],
) -> None:
    """End a load test's producers and worker, whatever state the test left them in."""
    stop.set()
    for task in producers:
        task.cancel()
    await asyncio.gather(*producers, return_exceptions=True)
    await worker.stop()
    with contextlib.suppress(Exception):
        await worker_task
