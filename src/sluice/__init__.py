"""Sluice: every customer chat message answered within its SLA.

The engine's public API::

    from sluice import Queue, Worker, Job
"""

from sluice import _moved
from sluice.errors import JobLostError, LeaseLostError, NonRetryableError, SluiceError
from sluice.queue.job import Job, JobRecord
from sluice.queue.queue import Completion, Enqueued, EnqueueRequest, Queue, Reservation
from sluice.worker.runtime import Handler, Worker

__all__ = [
    "Completion",
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

_moved.install()  # old module paths (before the reorganisation) keep importing
