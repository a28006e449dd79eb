"""Brokers: who answers a conversation (an AI responder or a human agent) and how.

* :mod:`sluice.broker.config` — the configured brokers (file or environment);
* :mod:`sluice.broker.assignment` — sticky / least-loaded / round-robin assignment in Redis;
* :mod:`sluice.broker.base` — the turn a handler answers and the reply it returns;
* :mod:`sluice.broker.handlers` — the handler registry and the built-ins
  (``template``, ``llm``, ``handoff``).
"""

from __future__ import annotations

from sluice.broker.assignment import Assigner, Assignment
from sluice.broker.base import (
    CustomerLine,
    HandlerError,
    Reply,
    ReplyHandler,
    Turn,
    answer_or_handoff,
)
from sluice.broker.base import (
    Handler as Handler,  # the old name of ReplyHandler, for plug-ins that import it
)
from sluice.broker.config import DEFAULT_BROKER, Broker, load_brokers, load_brokers_from_env

__all__ = [
    "DEFAULT_BROKER",
    "Assigner",
    "Assignment",
    "Broker",
    "CustomerLine",
    "HandlerError",
    "Reply",
    "ReplyHandler",
    "Turn",
    "answer_or_handoff",
    "load_brokers",
    "load_brokers_from_env",
]
