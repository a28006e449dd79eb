"""The worker runtime: slots, heartbeats, registry and the multi-process supervisor.

Start with :mod:`sluice.worker.worker`, whose docstring says which module plays which role.
"""

from sluice.worker.types import Handler
from sluice.worker.worker import Worker

__all__ = ["Handler", "Worker"]
