"""The worker runtime: slots, heartbeats, registry and the multi-process supervisor."""

from sluice.worker.runtime import Worker
from sluice.worker.types import Handler

__all__ = ["Handler", "Worker"]
