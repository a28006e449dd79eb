"""The worker runtime: slots, heartbeats, registry and the multi-process supervisor."""

from sluice.worker.runtime import Handler, Worker

__all__ = ["Handler", "Worker"]
