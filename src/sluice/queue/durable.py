"""Enqueue acknowledged only once replicas have it: ``Queue(..., wait_replicas=N)``.

Replication is asynchronous: a master acknowledges a write before its replicas have it, so
a master that dies in that instant takes the write along, and the replica promoted in its
place never saw it (docs/cluster.md measures it). ``WAIT numreplicas timeout`` blocks the
client until that many replicas acknowledged every write made *on the same connection*
before it, or until the timeout; it returns how many did
(https://valkey.io/commands/wait/). So the enqueue script and its WAIT must travel on one
connection to the master of the queue's slot, which is what this module does:

* one server: a non-transactional pipeline, which uses one connection;
* a cluster: both commands packed on one connection of the slot's master
  (redis-py's ``ClusterNode.execute_pipeline``); the cluster pipeline itself would route the
  keyless WAIT to another node. A redirection (the slot moved, a failover) refreshes the
  slot map and the whole exchange is sent again: the enqueue is idempotent by request id.

When fewer replicas acknowledge within the timeout, :class:`NotReplicatedError` is raised
(``SLUICE_ENQUEUE_WAIT_REPLICAS`` / ``SLUICE_ENQUEUE_WAIT_TIMEOUT_MS`` for the service):
the job *is* on the master and will run unless the master fails before replicating it.
Re-sending it with the same message id is safe (the dedupe record answers). WAIT does not
make the cluster strongly consistent (a replica that acknowledged may still not be the one
promoted, when a master has several); with one replica per master it closes the window.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import PipelineCommand
from redis.commands.core import AsyncScript
from redis.exceptions import AskError, MovedError, NoScriptError, RedisError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sluice.errors import SluiceError
from sluice.redis.cluster import RedisClient, node_for_key

__all__ = ["NotReplicatedError", "enqueue_replicated"]

_REDIRECTS = (MovedError, AskError, TryAgainError)
_ATTEMPTS = 3


class NotReplicatedError(SluiceError, RedisError):
    """The enqueue reached the master, but fewer replicas than asked confirmed it in time.

    A RedisError too, so what handles Redis trouble handles it: the service's intake puts
    the webhook in its durable spool and replays it later (the dedupe record answers)."""

    def __init__(self, job_ids: Sequence[str], acked: int, wanted: int, timeout_ms: int) -> None:
        self.job_ids = list(job_ids)
        self.acked = acked
        super().__init__(
            f"{len(job_ids)} job(s) enqueued on the master but confirmed by {acked} of "
            f"{wanted} replicas within {timeout_ms} ms: lost if the master fails now; "
            "re-sending with the same message id is safe"
        )


async def enqueue_replicated(
    client: RedisClient,
    script: AsyncScript,
    keys: Sequence[str],
    arg_lists: Sequence[Sequence[Any]],
    *,
    replicas: int,
    timeout_ms: int,
) -> list[tuple[bytes, int]]:
    """Run ``script`` once per argument list, then WAIT for ``replicas``, on one connection
    to the master holding ``keys``; returns each call's ``(job id, created)``."""
    commands: list[tuple[Any, ...]] = [
        ("EVALSHA", script.sha, len(keys), *keys, *args) for args in arg_lists
    ]
    commands.append(("WAIT", replicas, timeout_ms))
    for attempt in range(_ATTEMPTS):
        try:
            results = await _exchange(client, commands, keys[0])
        except (RedisConnectionError, RedisTimeoutError):
            # The master may be gone (a failover): read the slot map again and re-send;
            # a call that did run answers the same (request ids).
            if attempt == _ATTEMPTS - 1 or not isinstance(client, aioredis.RedisCluster):
                raise
            with contextlib.suppress(RedisError, OSError):
                await client.nodes_manager.initialize()
            continue
        errors = [r for r in results if isinstance(r, Exception)]
        if not errors:
            break
        if any(isinstance(e, NoScriptError) for e in errors):
            await client.script_load(script.script)  # a promoted replica has no script cache
        elif any(isinstance(e, _REDIRECTS) for e in errors) and isinstance(
            client, aioredis.RedisCluster
        ):
            await client.nodes_manager.initialize()  # the slot moved: read the map again
        else:
            raise errors[0]
        if attempt == _ATTEMPTS - 1:
            raise errors[0]
    *answers, acked = results
    created = [(job_id, int(new)) for job_id, new in answers]
    if int(acked) < replicas:
        raise NotReplicatedError([j.decode() for j, _ in created], int(acked), replicas, timeout_ms)
    return created


async def _exchange(client: RedisClient, commands: list[tuple[Any, ...]], key: str) -> list[Any]:
    """Send ``commands`` in order on one connection to ``key``'s master; each answer or the
    error it raised."""
    if isinstance(client, aioredis.RedisCluster):
        await client.initialize()  # no-op once the slot map is known
        node = node_for_key(client, key)
        pending = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
        await node.execute_pipeline(pending)
        return [c.result for c in pending]
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    answers: list[Any] = await pipe.execute(raise_on_error=False)
    return answers
