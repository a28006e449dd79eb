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

    On Python 3.11 a task cancelled while redis-py waits under a timeout can see a
    ``TimeoutError`` (redis-py's, one of :data:`REDIS_DOWN`) instead of ``CancelledError``
    when the timeout fires at the same moment; a loop that logs Redis errors and carries on
    would then outlive its cancellation and hang the worker's shutdown. Seen in
    tests/cluster/test_cluster_failover.py (a master killed under load): the heartbeat kept
    beating after ``Worker.stop``. Call it in such a loop's error branch."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
