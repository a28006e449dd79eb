"""Exceptions a handler or an embedding application can use or catch."""

from __future__ import annotations


class SluiceError(Exception):
    """Base class of every error Sluice raises on purpose."""


class NonRetryableError(SluiceError):
    """Raised by a handler when retrying cannot help (bad input, a permanent refusal).

    The job goes straight to the dead letters with this error, and its conversation moves on.
    """


class JobLostError(SluiceError):
    """The worker's reservation of a job expired and another worker owns it now."""


class LeaseLostError(JobLostError):
    """Raised by :meth:`sluice.Job.guard` and :meth:`sluice.Job.fence` when the running
    job's lease has passed (or Redis says it is no longer this runner's): another runner may
    own the job, so this one must not cause any external effect. The worker cancels a
    handler whose lease has passed and neither acknowledges nor fails its job."""
