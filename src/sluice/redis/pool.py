"""One Redis connection pool per process, with the metrics the origin note asks for.

Why a pool with a *hard* cap and a *bounded* wait: with N worker slots, an intake server and a
monitor sharing one process, an unbounded pool turns a Redis slowdown into thousands of
sockets, and an unbounded wait turns it into silently stuck slots. With a cap and a deadline
the failure is loud (:class:`PoolExhaustedError` names the knobs) and measurable
(``waits``, ``wait_time_seconds``).

Blocking commands (BLPOP and friends) never run on the pool: they would pin a pooled
connection for their whole timeout. They use :func:`dedicated_client`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from sluice.redis.cluster import RedisClient, connect_cluster, is_cluster_server
from sluice.settings.redact import redact_url

if TYPE_CHECKING:
    from sluice.settings.config import Settings

__all__ = [
    "MeteredConnectionPool",
    "PoolExhaustedError",
    "PoolMetrics",
    "RedisHandle",
    "RedisUnavailableError",
    "cluster_pool_metrics",
    "connect",
    "connect_from_settings",
    "dedicated_client",
]

# Connection behaviour shared by pooled and dedicated connections.
_CONNECT_TIMEOUT_S = 5.0
# Pooled commands are short (Lua scripts, small reads): a reply slower than this means a sick
# server or network, and the caller should get an error rather than hold its slot forever.
_POOLED_SOCKET_TIMEOUT_S = 10.0
# PING a connection that sat idle this long before reusing it, so a connection silently cut
# by a NAT or a server restart is replaced instead of failing a job.
_HEALTH_CHECK_INTERVAL_S = 30
_RETRIES = 3


def _retry() -> Retry:
    """Retry transient ConnectionError/TimeoutError with capped, jittered exponential backoff.

    Jitter keeps many workers that lost Redis at the same instant from reconnecting in
    lockstep. Three retries with a 50 ms base stays well under a second in total.
    """
    return Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), _RETRIES)


class PoolExhaustedError(RedisConnectionError):
    """No pooled connection became free within the bounded wait.

    A ConnectionError subclass so generic Redis error handling still catches it.
    """


class RedisUnavailableError(RedisConnectionError):
    """The pool could not open its first connections: Redis is unreachable or refuses us."""


@dataclass(frozen=True, slots=True)
class PoolMetrics:
    """A point-in-time snapshot of one pool."""

    max: int
    in_use: int
    idle: int
    opened: int  # connection objects ever created (reconnects of one object not counted)
    waits: int  # acquisitions that found every connection busy and had to wait
    wait_time_seconds: float  # total time spent by those waiting acquisitions
    errors: int  # connection-level failures (connect, I/O, timeouts), retries included
    exhausted: int  # waits that ended in PoolExhaustedError
    waiting: int  # callers waiting right now
    in_use_peak: int  # highest in_use ever seen: shows whether max is too low or too high

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)


class _Counters:
    """Mutable counters shared between a pool and the connections it creates."""

    __slots__ = ("errors",)

    def __init__(self) -> None:
        self.errors = 0


class _ErrorCountingConnection(AbstractConnection):
    """Mixin counting connection errors.

    redis-py reports every connection-level failure (failed connect, broken socket, timed-out
    read, failed health check) by calling ``disconnect(error=...)`` from its retry loop, so
    this single override sees them all, retried or not. A per-pool subclass carries the
    counters (see ``MeteredConnectionPool.__init__``).
    """

    _sluice_counters: _Counters

    async def disconnect(self, *args: Any, **kwargs: Any) -> None:
        # Arguments forwarded untouched: the signature of disconnect() varies across redis-py
        # releases; ``error`` is passed by keyword by every caller that has one.
        if kwargs.get("error") is not None:
            self._sluice_counters.errors += 1
        await super().disconnect(*args, **kwargs)


class MeteredConnectionPool(BlockingConnectionPool):
    """A BlockingConnectionPool with a pre-opened minimum and metrics.

    Build it with ``MeteredConnectionPool.from_url(url, max_connections=..., timeout=...,
    min_connections=...)``; ``timeout`` is the bounded wait for a free connection in seconds.
    """

    def __init__(
        self,
        max_connections: int = 20,
        timeout: float = 5.0,
        *,
        min_connections: int = 0,
        **connection_kwargs: Any,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        if not 0 <= min_connections <= max_connections:
            raise ValueError(
                f"min_connections must be between 0 and max_connections ({max_connections}),"
                f" got {min_connections}"
            )
        if timeout is None or timeout <= 0:
            # None would mean "wait forever": exactly the silent hang this pool exists to avoid.
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        super().__init__(max_connections=max_connections, timeout=timeout, **connection_kwargs)
        self.min_connections = min_connections
        self._counters = _Counters()
        base: type[AbstractConnection] = self.connection_class
        self.connection_class = type(
            f"Metered{base.__name__}",
            (_ErrorCountingConnection, base),
            {"_sluice_counters": self._counters},
        )
        self._opened = 0
        self._waits = 0
        self._wait_time = 0.0
        self._exhausted = 0
        self._waiting = 0
        self._in_use_peak = 0

    def make_connection(self) -> AbstractConnection:
        connection: AbstractConnection = super().make_connection()  # type: ignore[no-untyped-call]
        self._opened += 1
        return connection

    async def get_connection(
        self, command_name: Any = None, *keys: Any, **options: Any
    ) -> AbstractConnection:
        """Get a connection, counting waits and turning a timed-out wait into a clear error."""
        if self.can_get_connection():
            connection = await self._acquire()
        else:
            started = time.monotonic()
            self._waits += 1
            self._waiting += 1
            try:
                connection = await self._acquire()
            finally:
                self._waiting -= 1
                self._wait_time += time.monotonic() - started
        self._in_use_peak = max(self._in_use_peak, len(self._in_use_connections))
        return connection

    async def _acquire(self) -> AbstractConnection:
        try:
            connection: AbstractConnection = await super().get_connection()  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            # BlockingConnectionPool reports a timed-out wait as a bare ConnectionError caused
            # by asyncio's TimeoutError; a failed connect has a different cause.
            if isinstance(exc.__cause__, asyncio.TimeoutError):
                self._exhausted += 1
                raise PoolExhaustedError(
                    f"Redis connection pool exhausted: all {self.max_connections} connections "
                    f"stayed in use for {self.timeout:g} s. Raise REDIS_POOL_MAX_CONNECTIONS or "
                    "REDIS_POOL_TIMEOUT_S, or look for code holding connections (a blocking "
                    "command on a pooled client?)"
                ) from exc
            raise
        return connection

    async def warm(self) -> int:
        """Open connections until ``min_connections`` exist; return how many are open.

        Connections are really connected (handshake done), so the first jobs after startup
        do not pay the connect latency, and an unreachable Redis fails at startup. Call it
        before the pool is busy: it borrows connections briefly.
        """
        missing = max(0, self.min_connections - len(self._in_use_connections))
        # Borrowed together so the connects overlap: startup pays one round trip, not N.
        results = await asyncio.gather(
            *(self._acquire() for _ in range(missing)), return_exceptions=True
        )
        failure: BaseException | None = None
        for result in results:
            if isinstance(result, BaseException):
                failure = failure or result
            else:
                await self.release(result)
        if failure is not None:
            raise failure
        return len(self._available_connections) + len(self._in_use_connections)

    def metrics(self) -> PoolMetrics:
        return PoolMetrics(
            max=self.max_connections,
            in_use=len(self._in_use_connections),
            idle=len(self._available_connections),
            opened=self._opened,
            waits=self._waits,
            wait_time_seconds=self._wait_time,
            errors=self._counters.errors,
            exhausted=self._exhausted,
            waiting=self._waiting,
            in_use_peak=self._in_use_peak,
        )


@dataclass(frozen=True, slots=True)
class RedisHandle:
    """The process's Redis client and the pool behind it; close it once at shutdown."""

    client: RedisClient
    pool: MeteredConnectionPool | None

    @property
    def cluster(self) -> bool:
        """True when the client is a ``RedisCluster`` (docs/cluster.md)."""
        return self.pool is None

    def metrics(self) -> PoolMetrics:
        if self.pool is not None:
            return self.pool.metrics()
        assert isinstance(self.client, aioredis.RedisCluster)
        return cluster_pool_metrics(self.client)

    async def close(self) -> None:
        await self.client.aclose()
        if self.pool is not None:
            await self.pool.aclose()


def cluster_pool_metrics(client: aioredis.RedisCluster) -> PoolMetrics:
    """The connections of a cluster client, summed over the nodes it knows.

    redis-py's cluster client keeps one pool per node with a hard cap (``max`` here is the
    cap times the nodes) but no waiting: a command that finds its node's connections all
    busy fails at once with ``MaxConnectionsError`` (a ConnectionError) instead of waiting
    ``REDIS_POOL_TIMEOUT_S``. So ``waits``, ``wait_time_seconds``, ``exhausted`` and
    ``waiting`` stay 0, ``errors`` is not counted, and ``in_use_peak`` is the current
    ``in_use``. Every key of a queue is on one node, so that node's pool is the one that
    fills: size REDIS_POOL_MAX_CONNECTIONS for the whole process's traffic."""
    nodes = client.get_nodes()
    opened = sum(len(n._connections) for n in nodes)
    idle = sum(len(n._free) for n in nodes)
    return PoolMetrics(
        max=sum(n.max_connections for n in nodes),
        in_use=opened - idle,
        idle=idle,
        opened=opened,
        waits=0,
        wait_time_seconds=0.0,
        errors=0,
        exhausted=0,
        waiting=0,
        in_use_peak=opened - idle,
    )


def cluster_client_options() -> dict[str, Any]:
    """The pooled connections' behaviour (timeouts, health checks, retries) for a cluster
    client: the same as a single server's."""
    return {
        "decode_responses": False,
        "socket_connect_timeout": _CONNECT_TIMEOUT_S,
        "socket_timeout": _POOLED_SOCKET_TIMEOUT_S,
        "health_check_interval": _HEALTH_CHECK_INTERVAL_S,
        "retry": _retry(),
    }


async def connect(
    url: str,
    *,
    pool_enabled: bool,
    min_connections: int,
    max_connections: int,
    wait_timeout_s: float,
    client_name: str | None = "sluice",
) -> RedisHandle:
    """Create the process pool and open its minimum connections.

    With ``pool_enabled`` false (the legacy profile) the pool holds exactly one connection:
    the same class, so metrics and error messages stay the same, and concurrent callers queue
    for that one connection instead of opening more. ``client_name`` shows in CLIENT LIST.
    """
    if not pool_enabled:
        min_connections, max_connections = 1, 1
    pool = MeteredConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait_timeout_s,
        min_connections=min(min_connections, max_connections),
        decode_responses=False,
        client_name=client_name,
        socket_connect_timeout=_CONNECT_TIMEOUT_S,
        socket_timeout=_POOLED_SOCKET_TIMEOUT_S,
        health_check_interval=_HEALTH_CHECK_INTERVAL_S,
        retry=_retry(),
    )
    try:
        await pool.warm()
    except Exception as exc:
        await pool.aclose()
        raise RedisUnavailableError(f"cannot connect to Redis at {redact_url(url)}: {exc}") from exc
    return RedisHandle(client=aioredis.Redis(connection_pool=pool), pool=pool)


async def connect_from_settings(settings: Settings, url: str, *, warm: bool = True) -> RedisHandle:
    """The process pool as the settings describe it (``REDIS_POOL_*``): the one way a Sluice
    process connects. ``warm=False`` opens no connection up front (a process that must start
    while Redis is down, such as the API serving its health document).

    ``REDIS_CLUSTER=true`` (or, when it is unset, a server that reports cluster mode) makes
    it a ``RedisCluster`` client on the node ``url`` names (docs/cluster.md). Detection needs
    the server: with ``warm=False`` and REDIS_CLUSTER unset the client is a single server's."""
    cluster = settings.redis_cluster
    if cluster is None and warm:
        cluster = await is_cluster_server(url)
    if cluster:
        return await connect_cluster(
            url, max_connections=settings.redis_pool_max_connections, warm=warm
        )
    return await connect(
        url,
        pool_enabled=settings.redis_pool_enabled,
        min_connections=settings.redis_pool_min_connections if warm else 0,
        max_connections=settings.redis_pool_max_connections,
        wait_timeout_s=settings.redis_pool_timeout_s,
    )


def dedicated_client(url: str, *, client_name: str | None = "sluice-blocking") -> aioredis.Redis:
    """A client with a private single connection, for blocking commands such as BLPOP.

    It has no read timeout (a BLPOP may legitimately wait longer than any fixed socket
    timeout; pass the command its own timeout instead) and never touches the shared pool, so
    a waiting worker cannot starve the others of connections. Close it with ``aclose()``.
    """
    return aioredis.Redis.from_url(
        url,
        decode_responses=False,
        single_connection_client=True,
        client_name=client_name,
        socket_connect_timeout=_CONNECT_TIMEOUT_S,
        socket_timeout=None,
        health_check_interval=_HEALTH_CHECK_INTERVAL_S,
        retry=_retry(),
    )
