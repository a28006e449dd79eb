"""The worker's ear on the queue's control channel.

Pause, drain, cancel and a live rate limit change what a worker may start *now*, but a
worker that is busy does not ask Redis until a slot frees, and by then its prefetch buffer
would already have started jobs the queue no longer wants. The scripts that change these
PUBLISH on ``sluice:{queue}:control``; this listener hears it on a connection of its own
(never one of the shared pool) and tells the worker, within a round trip. The heartbeat
reads the same state every beat, so a message lost while the listener reconnects delays
the reaction by at most one heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from sluice.queue.queue import Queue

log = logging.getLogger("sluice.worker")


async def listen(
    queue: Queue, on_message: Callable[[str], None], subscribed: asyncio.Event
) -> None:
    """Call ``on_message`` with each control message ("pause", "drain", "cancel:<key>",
    "rate") until cancelled; reconnects with a capped back-off. ``subscribed`` is set once
    the subscription stands (the worker waits for it before it reserves anything)."""
    failures = 0
    while True:
        client = queue.blocking_client(read_timeout_s=None)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(queue.keys.control)
            subscribed.set()
            failures = 0
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    on_message(data.decode() if isinstance(data, bytes) else str(data))
        except (RedisError, OSError) as exc:
            failures += 1
            delay = min(1.0, 0.1 * 2 ** min(failures, 4))
            log.debug("control channel lost (%r); again in %.1f s", exc, delay)
            await asyncio.sleep(delay)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await client.aclose()
                await client.connection_pool.disconnect()
