"""The worker's old home, kept so that existing imports keep working.

The runtime was split along its roles (see :mod:`sluice.worker.worker`); import from the
new modules, or ``from sluice.worker import Worker, Handler``.
"""

from __future__ import annotations

from sluice.worker.fetch import CHARGE_AFTER_S, job_log
from sluice.worker.retry import backoff_ms
from sluice.worker.shutdown import HANDED_BACK_MID_TURN
from sluice.worker.slots import RunKey
from sluice.worker.types import REDIS_DOWN, Handler
from sluice.worker.worker import CONTROL_SUBSCRIBE_WAIT_S, Worker, log

__all__ = [
    "CHARGE_AFTER_S",
    "CONTROL_SUBSCRIBE_WAIT_S",
    "HANDED_BACK_MID_TURN",
    "REDIS_DOWN",
    "Handler",
    "RunKey",
    "Worker",
    "backoff_ms",
    "job_log",
    "log",
]
