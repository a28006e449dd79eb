"""A job handler for worker processes started by tests: takes a little time, like a broker
call, so a worker stopped mid-run has jobs in hand to finish or hand back."""

from __future__ import annotations

import asyncio

from sluice.worker.types import Job


async def handle(job: Job) -> None:
    await asyncio.sleep(0.05)
