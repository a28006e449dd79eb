"""Sluice: every customer chat message answered within its SLA.

The engine's public API::

    from sluice import Queue, Worker, Job
"""

from sluice import _moved

_moved.install()  # old module paths (before the reorganisation) keep importing

from sluice.errors import (  # noqa: E402
    ConfigError,
    JobLostError,
    LeaseLostError,
    NonRetryableError,
    SluiceError,
)
from sluice.queue.job import Job, JobRecord  # noqa: E402
from sluice.queue.queue import Completion, Enqueued, EnqueueRequest, Queue, Reservation  # noqa: E402
from sluice.worker import Handler, Worker  # noqa: E402

__all__ = [
    "Completion",
    "ConfigError",
    "EnqueueRequest",
    "Enqueued",
    "Handler",
    "Job",
    "JobLostError",
    "JobRecord",
    "LeaseLostError",
    "NonRetryableError",
    "Queue",
    "Reservation",
    "SluiceError",
    "Worker",
]
__version__ = "0.1.0"
