"""What happens to the jobs in hand when the worker stops.

Nothing a worker holds may be lost or charged for its stop: the buffered jobs go back to the
head of their lanes at once (they never started), running turns get the grace period to
finish and be acknowledged, and the turns still running after it are cancelled and handed
back without an attempt charged. A turn cancelled mid-way is handed back with
:data:`HANDED_BACK_MID_TURN` as its error, so its next run checks what it may already
have sent. Whatever cannot reach Redis is recovered when its lease expires, as a crashed
worker's would be: at least once, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sluice.queue.queue import Queue
from sluice.worker.fetch import Fetcher
from sluice.worker.slots import Slots
from sluice.worker.types import REDIS_DOWN

log = logging.getLogger("sluice.worker")

# The recorded error of a job whose handler was cancelled at shutdown: whatever the turn
# was sending may still land (see sluice.chatwoot.client.may_still_land).
HANDED_BACK_MID_TURN = "handed back mid-turn at shutdown"


async def finish_or_release(
    queue: Queue, slots: Slots, fetcher: Fetcher, *, grace_s: float
) -> None:
    """Give running jobs the grace period, acknowledging as they finish; hand the rest
    back to their lanes without an attempt penalty."""
    deadline = time.monotonic() + grace_s
    slots.hand_back.extend(e.job for e in slots.buffer.take_all())
    slots.hand_back.extend(job for job, _ in slots.unconfirmed)
    slots.unconfirmed.clear()
    try:
        await fetcher.hand_back_revoked()
    except REDIS_DOWN as exc:
        log.error("could not hand back buffered jobs (%s)", exc)
    while slots.running and (left := deadline - time.monotonic()) > 0:
        tasks = [run.task for run in slots.running.values() if run.task is not None]
        await asyncio.wait(tasks, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        await fetcher.flush_done()
    leftovers = [run.job for run in slots.running.values() if not run.lease.lost]
    tasks = [run.task for run in slots.running.values() if run.task is not None]
    for task in tasks:
        task.cancel()
    if tasks:
        _, stuck = await asyncio.wait(tasks, timeout=5.0)
        if stuck:
            log.error("%d handlers ignored cancellation; leaving them", len(stuck))
    await fetcher.flush_done()
    with contextlib.suppress(*REDIS_DOWN):
        await fetcher.hand_back_revoked()  # jobs a replayed exchange returned
    if leftovers:
        try:
            async with asyncio.timeout(5.0):
                released = await queue.release(leftovers, reason=HANDED_BACK_MID_TURN)
            log.warning("handed back %d unfinished jobs after the grace period", released)
        except (*REDIS_DOWN, TimeoutError) as exc:
            log.error(
                "could not hand back %d jobs (%r); their leases will expire",
                len(leftovers),
                exc,
            )
