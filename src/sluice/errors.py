"""Every exception Sluice raises on purpose, in one hierarchy::

    SluiceError
    ├── ConfigError          a setting Sluice refuses to start with (also a ValueError)
    ├── NonRetryableError    raised by a handler: retrying cannot help
    └── JobLostError         the reservation expired, another worker owns the job
        └── LeaseLostError   the running job's lease passed: cause no external effect

Other modules define narrower errors on top of these (``SpoolFullError``,
``RedisUnavailableError``, the Chatwoot client's ``ChatwootError``...), each beside the code
that raises it.
"""

from __future__ import annotations


class SluiceError(Exception):
    """Base class of every error Sluice raises on purpose."""


class ConfigError(SluiceError, ValueError):
    """A configuration value that Sluice refuses to start with.

    ``variables`` names the offending environment variables so callers (CLI, tests) need not
    parse the message. A ValueError too, as it was before the hierarchy had a root.
    """

    def __init__(self, message: str, variables: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.variables = variables


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
