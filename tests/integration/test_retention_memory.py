"""The bytes per completed job that `sluice validate` assumes, measured on the test Redis:
Chatwoot-shaped jobs through a real worker, MEMORY USAGE of each job hash plus its share
of the completed zset (and the expires-dict entry MEMORY USAGE leaves out)."""

from __future__ import annotations

import redis.asyncio as aioredis

from sluice.monitor.retention import COMPLETED_JOB_BYTES, measure_completed_job_bytes


async def test_completed_job_bytes_match_the_assumed_figure(redis_client: aioredis.Redis) -> None:
    # More than zset-max-listpack-entries (128): the zset is a skiplist, as in production.
    measured = await measure_completed_job_bytes(redis_client, 300)
    assert measured.jobs == 300
    assert measured.job_hash_bytes > 0 and measured.zset_bytes > 0
    # The warning must not underestimate: the constant may be at most 10 % low. Other
    # servers (Valkey's embedded keys) are leaner, so the lower bound is looser.
    assert 0.6 * COMPLETED_JOB_BYTES <= measured.per_job <= 1.1 * COMPLETED_JOB_BYTES, measured
    assert not [k async for k in redis_client.scan_iter(match="sluice:{memory-*")]  # cleaned
