"""The retention memory projection and its `sluice validate` verdicts, without Redis (the
CLI tests in tests/cli/test_validate.py run the same check against a real server)."""

from __future__ import annotations

from sluice.monitor.retention import COMPLETED_JOB_BYTES, projected_bytes
from sluice.service.validate import retention_memory_check
from sluice.settings.check import Check
from sluice.settings.config import load_settings

GIB = 1 << 30


def test_the_default_retention_is_a_day() -> None:
    assert load_settings({}).completed_retention_s == 86_400


def test_a_week_at_thirty_jobs_per_second_is_about_twelve_gib() -> None:
    assert 12 * GIB < projected_bytes(30, 7 * 86_400) < 13 * GIB
    assert projected_bytes(30, 86_400) < 2 * GIB  # the new default


def test_over_the_limit_warns_and_names_a_retention_that_fits() -> None:
    check = retention_memory_check(
        retention_s=7 * 86_400,
        jobs_per_s=30,
        rate_source="SLUICE_PEAK_RATE",
        limit_bytes=4 * GIB,
        limit_source="maxmemory",
    )
    assert check.outcome == "warn"
    assert "exceeds maxmemory 4.0 GiB" in check.detail
    assert "refuses writes" in check.detail
    fits = int(0.5 * 4 * GIB / (30 * COMPLETED_JOB_BYTES))
    assert f"at most {fits} " in check.detail
    assert projected_bytes(30, fits) <= 2 * GIB


def test_without_maxmemory_the_host_memory_is_the_limit() -> None:
    check = retention_memory_check(
        retention_s=7 * 86_400,
        jobs_per_s=30,
        rate_source="QUEUE_RATE_LIMIT",
        limit_bytes=8 * GIB,
        limit_source="host memory",
    )
    assert check.outcome == "warn" and "host runs out of memory" in check.detail


def check(retention_s: float, jobs_per_s: float, limit_bytes: int = GIB) -> Check:
    return retention_memory_check(
        retention_s=retention_s,
        jobs_per_s=jobs_per_s,
        rate_source="QUEUE_RATE_LIMIT",
        limit_bytes=limit_bytes,
        limit_source="maxmemory",
    )


def test_nothing_to_project_is_not_a_warning() -> None:
    assert check(0, 30).outcome == "pass"  # completed jobs are deleted at once
    idle = check(86_400, 0)
    assert idle.outcome == "pass" and "SLUICE_PEAK_RATE" in idle.detail
    unknown = check(86_400, 30, limit_bytes=0)
    assert unknown.outcome == "pass" and "no memory limit" in unknown.detail
