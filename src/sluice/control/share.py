"""A worker's share of the queue's adaptive concurrency target.

The controller writes one global target (``adaptive`` hash, field ``target``); every live
worker takes ``target / live workers``, the remainder spread over the first workers in
the order of their ids, so every worker computes the same split without asking anyone,
and never less than one slot. A worker counts as live while its registry entry is younger
than its record's TTL (5 heartbeats, :mod:`sluice.worker.registry`): a killed worker's
share goes back to the others within that time.
"""

from __future__ import annotations

from collections.abc import Iterable

from sluice.queue.queue import Queue

__all__ = ["ShareReader", "share_of"]


def share_of(target: int, worker_ids: Iterable[str], me: str) -> int:
    """``me``'s slots of ``target`` split over ``worker_ids`` (``me`` counted in)."""
    ids = sorted(set(worker_ids) | {me})
    base, extra = divmod(max(0, target), len(ids))
    return max(1, base + (1 if ids.index(me) < extra else 0))


class ShareReader:
    """Reads the target and the live workers in one round trip and returns this worker's
    share, or None while no controller has written a target yet."""

    def __init__(self, queue: Queue, worker_id: str, *, live_s: float) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self.live_s = live_s
        self.target: int | None = None  # as last read

    async def __call__(self) -> int | None:
        keys = self.queue.keys
        pipe = self.queue.redis.pipeline(transaction=False)
        pipe.time()
        pipe.hget(keys.adaptive, "target")
        pipe.zrange(keys.workers, 0, -1, withscores=True)
        (seconds, micros), target, workers = await pipe.execute()
        if target is None:
            self.target = None
            return None
        now = int(seconds) + int(micros) / 1e6
        live = [
            w.decode() if isinstance(w, bytes) else str(w)
            for w, beat in workers
            if float(beat) >= now - self.live_s
        ]
        self.target = int(target)
        return share_of(self.target, live, self.worker_id)
