"""Fixtures of the cluster tests: a cluster client on the session's real Valkey Cluster
(``valkey_cluster``, tests/conftest.py), closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from sluice.testing.cluster import ValkeyCluster


@pytest.fixture
async def cluster_client(valkey_cluster: ValkeyCluster) -> AsyncIterator[Any]:
    client = valkey_cluster.client()
    try:
        yield client
    finally:
        await client.aclose()
