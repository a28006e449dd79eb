"""Redis Cluster (or Valkey Cluster) as the engine sees it: one more kind of client.

Every key of a queue carries the hash tag ``{name}``, so a queue lives in one slot and each
Lua script call (which declares the queue's ``meta`` key) runs on the node that owns it;
redis-py's :class:`redis.asyncio.RedisCluster` routes it there and follows ``MOVED`` and
``ASK`` redirections. What differs from a single server is only where a command that is
*not* about one key goes, and which connections are private:

* **Blocking reads and subscriptions** (the worker's BLPOP on ``wake``, its control
  channel) never use the shared connections. On a cluster they get a client of their own
  (:func:`dedicated_client_like`): a second ``RedisCluster`` on the same nodes, so the
  BLPOP is routed to the node owning the queue's slot and is re-routed after a failover or
  a slot migration, as every other command is.
* **PUBLISH** (the scripts' control messages) is propagated by the cluster bus to every
  node, so a subscriber connected to any node hears it (Redis Cluster specification,
  "Publish/Subscribe": https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/).
* **Server-wide reads** (INFO, CONFIG GET, SCAN) are per node: :func:`primaries` gives the
  masters to ask each in turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeGuard

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode

from sluice.settings.redact import redact_url

if TYPE_CHECKING:
    from sluice.redis.pool import RedisHandle

__all__ = [
    "ClusterOverview",
    "RedisClient",
    "cluster_overview",
    "connect_cluster",
    "dedicated_client_like",
    "is_cluster",
    "is_cluster_server",
    "node_for_key",
    "primaries",
]

#: Any client the engine accepts: a single server's or a cluster's.
RedisClient: TypeAlias = aioredis.Redis | aioredis.RedisCluster

# What a dedicated cluster client copies from the shared one (authentication, TLS, the
# wire protocol); pool sizes, callbacks and timeouts are its own.
_COPIED = (
    "username",
    "password",
    "credential_provider",
    "socket_connect_timeout",
    "protocol",
    "ssl",
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_data",
    "ssl_check_hostname",
)


def is_cluster(client: object) -> TypeGuard[aioredis.RedisCluster]:
    """True for a ``redis.asyncio.RedisCluster``."""
    return isinstance(client, aioredis.RedisCluster)


def dedicated_client_like(
    client: RedisClient,
    *,
    read_timeout_s: float | None,
    client_name: str | None = None,
    connections: int = 1,
) -> RedisClient:
    """A client with connections of its own, reaching the same server(s) as ``client``:
    for BLPOP and SUBSCRIBE, which would hold a shared connection for their whole wait.
    ``read_timeout_s`` must exceed every blocking command's own timeout. On a cluster
    ``connections`` blocking reads may run at once on one node (a partitioned queue's
    worker sends one BLPOP per slot); on one server a single connection serves."""
    if isinstance(client, aioredis.RedisCluster):
        shared = client.connection_kwargs
        kwargs: dict[str, Any] = {k: shared[k] for k in _COPIED if shared.get(k) is not None}
        if client_name is not None:
            kwargs["client_name"] = client_name
        nodes = [ClusterNode(n.host, n.port) for n in client.get_nodes()]
        return aioredis.RedisCluster(
            startup_nodes=nodes or [ClusterNode(n.host, n.port) for n in client.startup_nodes],
            socket_timeout=read_timeout_s,
            # One BLPOP per slot or one subscription at a time, with room to reconnect.
            max_connections=max(4, connections + 1),
            **kwargs,
        )
    pool = client.connection_pool
    options = {**pool.connection_kwargs, "socket_timeout": read_timeout_s}
    if client_name is not None:
        options["client_name"] = client_name
    dedicated = aioredis.ConnectionPool(
        connection_class=pool.connection_class, max_connections=1, **options
    )
    return aioredis.Redis(connection_pool=dedicated)


async def close_dedicated(client: RedisClient) -> None:
    """Close a client made by :func:`dedicated_client_like`, its connections included."""
    await client.aclose()
    if isinstance(client, aioredis.Redis):
        await client.connection_pool.disconnect()


async def is_cluster_server(url: str) -> bool:
    """Whether the server at ``url`` runs in cluster mode (``INFO cluster`` says
    ``cluster_enabled:1``); a unix socket (the embedded server) never does."""
    from sluice.redis.pool import RedisUnavailableError

    if url.startswith("unix:"):
        return False
    probe = aioredis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        info = await probe.info("cluster")
    except Exception as exc:
        raise RedisUnavailableError(f"cannot connect to Redis at {redact_url(url)}: {exc}") from exc
    finally:
        await probe.aclose()
    return bool(int(info.get("cluster_enabled", 0) or 0))


async def connect_cluster(
    url: str, *, max_connections: int, client_name: str | None = "sluice", warm: bool = True
) -> RedisHandle:
    """A ``RedisCluster`` from a URL naming any node (it discovers the others), up to
    ``max_connections`` per node; its first connections are opened now unless ``warm`` is
    false (it then reads the slot map on its first command)."""
    from sluice.redis.pool import RedisHandle, RedisUnavailableError, cluster_client_options

    client = aioredis.RedisCluster.from_url(
        url, max_connections=max_connections, client_name=client_name, **cluster_client_options()
    )
    if not warm:
        return RedisHandle(client=client, pool=None)
    try:
        await client.initialize()
        await client.ping(target_nodes=aioredis.RedisCluster.PRIMARIES)
    except Exception as exc:
        await client.aclose()
        raise RedisUnavailableError(
            f"cannot connect to the Redis Cluster at {redact_url(url)}: {exc}"
        ) from exc
    return RedisHandle(client=client, pool=None)


def node_for_key(client: aioredis.RedisCluster, key: str) -> ClusterNode:
    """The master that serves ``key``'s slot, as the client knows it now."""
    node = client.get_node_from_key(key)
    if node is None:
        raise LookupError(f"no node serves the slot of {key!r}")
    return node


def primaries(client: aioredis.RedisCluster) -> list[ClusterNode]:
    """The cluster's masters, as the client knows them now."""
    return list(client.get_primaries())


@dataclass(frozen=True, slots=True)
class ClusterOverview:
    """What ``sluice validate`` and the health document report of a cluster."""

    state: str  # CLUSTER INFO's cluster_state on the node owning the queue's slot
    masters: int
    replicas: int
    slot: int  # the queue's slot (every key of a queue is in it)
    owner: str  # host:port of the master serving it
    owner_replicas: int  # replicas of that master that are not failed
    per_master: dict[str, dict[str, str]]  # host:port -> maxmemory_policy, aof_enabled


async def cluster_overview(client: aioredis.RedisCluster, key: str) -> ClusterOverview:
    """The cluster's state as the master owning ``key``'s slot sees it, with each master's
    eviction policy and append-only setting (INFO is per node)."""
    owner = node_for_key(client, key)
    info = await client.cluster_info(target_nodes=owner)
    nodes: dict[str, dict[str, Any]] = await client.cluster_nodes()
    masters = {
        a: n for a, n in nodes.items() if "master" in n["flags"] and "fail" not in n["flags"]
    }
    replicas = {
        a: n for a, n in nodes.items() if "slave" in n["flags"] and "fail" not in n["flags"]
    }
    owner_id = next((n["node_id"] for a, n in masters.items() if a == owner.name), "")
    per_master: dict[str, dict[str, str]] = {}
    for node in client.get_primaries():
        memory = await client.info("memory", target_nodes=node)
        persistence = await client.info("persistence", target_nodes=node)
        per_master[node.name] = {
            "maxmemory_policy": str(memory.get("maxmemory_policy", "")),
            "aof_enabled": str(persistence.get("aof_enabled", 0)),
        }
    return ClusterOverview(
        state=str(info.get("cluster_state", "unknown")),
        masters=len(masters),
        replicas=len(replicas),
        slot=client.keyslot(key),
        owner=owner.name,
        owner_replicas=sum(1 for n in replicas.values() if n["master_id"] == owner_id),
        per_master=per_master,
    )
