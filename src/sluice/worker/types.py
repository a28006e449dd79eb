"""The names every part of the worker speaks in: what a handler is, and what "Redis is down"
looks like.

:data:`Handler` is the engine's handler: an async callable that runs one turn (a job and
the members of its batch). It is not :class:`sluice.broker.base.ReplyHandler`, the reply
pipeline's per-broker protocol that answers a conversation's turn; the pipeline itself is
one of these.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sluice.queue.job import Job

Handler = Callable[[Job], Awaitable[Any]]

# Anything Redis may answer while unreachable, restarting or failing over (READONLY): the
# worker backs off and carries on rather than dying with jobs in hand.
REDIS_DOWN = (RedisError, RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that a Redis call turned into an error.

    Seen in tests/cluster/test_cluster_failover.py (a master killed under load, about one
    run in three): after ``Worker.stop`` the heartbeat task was marked cancelling yet kept
    beating, so the cancellation had been swallowed inside a Redis call (turned into an
    ordinary error, which the loop logs and survives, or absorbed by a retry that then
    succeeded); the worker's shutdown then waited for it for ever. Which layer does it
    (redis-py's cluster client retrying through a failover, or its timeouts under Python
    3.11) was not pinned down. A loop that survives Redis errors calls this at the top of
    each round and in its error branch: ``Task.cancelling()`` stays set until the task
    itself calls ``uncancel()``, so the loop never outlives its cancellation."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
