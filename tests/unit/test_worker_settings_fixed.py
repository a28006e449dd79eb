"""A worker's settings are handed to its parts when it is built: assigning one afterwards
must fail loudly instead of being silently ignored."""

from __future__ import annotations

import pytest

from sluice import Queue, Worker


async def _noop(job: object) -> None:
    return None


async def test_assigning_a_setting_after_construction_raises() -> None:
    queue = Queue("fixed-settings", url="redis://127.0.0.1:6379/0")
    worker = Worker(queue, _noop, concurrency=2, rate_limit=5)
    with pytest.raises(AttributeError, match="rate_limit"):
        worker.rate_limit = 10
    assert worker.rate_limit == 5
    worker.handle_signals = False  # still changeable: read by run()
    worker.concurrency = 3
    assert worker.concurrency == 3
    await queue.close()


def test_a_bound_reads_as_an_operator_writes_it() -> None:
    from sluice.errors import ConfigError
    from sluice.settings import load_settings

    with pytest.raises(ConfigError) as caught:
        load_settings({"SLUICE_SLA_OBJECTIVE": "1"})
    assert "must be lower than 1" in str(caught.value)
    assert "1.0" not in str(caught.value)
