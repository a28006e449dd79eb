"""The names every part of the worker speaks in: what a handler is, and what "Redis is down"
looks like.

:data:`Handler` is the engine's handler: an async callable that runs one turn (a job and
the members of its batch). It is not :class:`sluice.broker.base.ReplyHandler`, the reply
pipeline's per-broker protocol that answers a conversation's turn; the pipeline itself is
one of these.
"""

from __future__ import annotations

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
