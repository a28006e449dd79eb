"""Where the worker meets the reply pipeline: the one place a worker process gets its
handler.

A worker runs any ``async def handler(job)`` (the engine knows nothing of Chatwoot). The
Chatwoot service's handler is the :class:`~sluice.service.pipeline.ReplyPipeline`, built here
from the settings with its Chatwoot client, brokers and broker handlers. ``sluice worker``,
``sluice up`` and the load test all call :func:`worker_handler`, so there is no other
wiring to find.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sluice.broker.assignment import Assigner
from sluice.broker.base import ReplyHandler
from sluice.broker.breaker import BreakerBoard
from sluice.broker.config import load_brokers_from_env
from sluice.broker.handlers import get_handler, load_handler_settings
from sluice.chatwoot.client import ChatwootClient
from sluice.errors import ConfigError
from sluice.queue.fairness import FairnessCaps
from sluice.service.conversations import Conversations
from sluice.service.pipeline import ReplyPipeline

# Runtime, open_runtime and queue_for live in service.runtime; they are re-exported here only
# because the old module path ``sluice.app`` (see _moved.py) named them with this module's.
from sluice.service.runtime import Runtime, open_runtime, queue_for
from sluice.settings.breaker import load_breaker_settings
from sluice.worker import Handler, Worker

log = logging.getLogger("sluice.wiring")

__all__ = [
    "DEFAULT_HANDLER",
    "PIPELINE",
    "Runtime",
    "WorkerHandler",
    "apply_fairness",
    "build_pipeline",
    "build_worker",
    "import_handler",
    "open_runtime",
    "queue_for",
    "worker_handler",
]

log = logging.getLogger(__name__)

#: The handler a worker runs unless told otherwise: the Chatwoot reply pipeline.
PIPELINE = "pipeline"
DEFAULT_HANDLER = PIPELINE


@dataclass(frozen=True)
class WorkerHandler:
    """A worker's handler, what closes it at shutdown, and how many lines of one
    conversation it takes per turn."""

    handler: Handler
    close: Callable[[], Awaitable[None]]
    batch_size: int


async def _nothing_to_close() -> None:
    return None


def worker_handler(runtime: Runtime, spec: str = DEFAULT_HANDLER) -> WorkerHandler:
    """The handler named by ``spec``: the reply pipeline (answering a burst of lines in one
    turn, up to SLUICE_BURST_MAX), or an imported ``package.module:function`` taking one
    job at a time. Raises :class:`ConfigError` / ``ValueError`` with a readable message."""
    if spec != PIPELINE:
        return WorkerHandler(import_handler(spec), _nothing_to_close, 1)
    pipeline, client = build_pipeline(runtime)
    return WorkerHandler(pipeline, client.aclose, runtime.settings.burst_max)


def build_pipeline(runtime: Runtime) -> tuple[ReplyPipeline, ChatwootClient]:
    """The pipeline and its Chatwoot client (close it at shutdown)."""
    s = runtime.settings
    if not s.chatwoot_url or s.chatwoot_api_token is None:
        raise ConfigError(
            "CHATWOOT_URL and CHATWOOT_API_TOKEN are needed to send replies "
            "(or run `sluice up --demo`, which starts a Chatwoot simulator)",
            ("CHATWOOT_URL", "CHATWOOT_API_TOKEN"),
        )
    client = ChatwootClient(
        s.chatwoot_url,
        s.chatwoot_api_token.get_secret_value(),
        max_connections=s.chatwoot_max_connections,
    )
    brokers = load_brokers_from_env()
    handler_settings = load_handler_settings()
    handlers: dict[str, ReplyHandler] = {}
    for name in {b.handler for b in brokers} | {"handoff"}:
        handlers[name] = get_handler(name, handler_settings)
    queue = runtime.queue
    # The circuit breakers (off unless SLUICE_BREAKER_ENABLED): docs/reliability.md.
    breaker_settings = load_breaker_settings()
    breakers, fallback = None, None
    if breaker_settings.enabled:
        breakers = BreakerBoard(queue.redis, queue.keys, brokers, breaker_settings)
        fallback = handlers.get(breaker_settings.fallback) or get_handler(
            breaker_settings.fallback, handler_settings
        )
    log.info(breaker_settings.describe())
    pipeline = ReplyPipeline(
        client=client,
        conversations=Conversations(queue.redis, queue.keys, answer_open=s.chatwoot_answer_open),
        assigner=Assigner(queue.redis, queue.keys, brokers),
        handlers=handlers,
        sla_budget_ms=s.sla_warning_threshold_ms,
        handoff_budget_ms=s.handoff_budget_ms,
        agent_bot_id=s.chatwoot_agent_bot_id,
        breakers=breakers,
        fallback=fallback,
    )
    return pipeline, client


def build_worker(runtime: Runtime, handler: Handler, *, batch_size: int = 1) -> Worker:
    """A worker with the process's settings; the reply pipeline answers bursts in one turn
    (``batch_size`` = SLUICE_BURST_MAX), other handlers get one job at a time."""
    s = runtime.settings
    return Worker(
        runtime.queue,
        handler,
        concurrency=s.worker_concurrency,
        rate_limit=s.queue_rate_limit,
        lease_ms=s.lease_ms,
        heartbeat_ms=s.heartbeat_ms,
        shutdown_grace_s=s.shutdown_grace_s,
        batch_size=batch_size,
        adaptive=s.worker_concurrency_mode == "adaptive",
    )


async def apply_fairness(runtime: Runtime) -> int:
    """Store this process's caps (SLUICE_ACCOUNT_CONCURRENCY, SLUICE_ACCOUNT_RATE,
    SLUICE_INBOX_CONCURRENCY, SLUICE_INBOX_RATE) in the queue, where every reservation reads
    them: a worker starting up makes the queue follow its configuration, all 0 turning
    fairness off (docs/fairness.md). Returns the held-back lanes that went back to the queue
    when it was turned off."""
    s = runtime.settings
    caps = FairnessCaps(
        concurrency=s.account_concurrency,
        rate=s.account_rate,
        inbox_concurrency=s.inbox_concurrency,
        inbox_rate=s.inbox_rate,
    )
    released = await runtime.queue.set_fairness(caps)
    if caps.on:
        log.info("tenant fairness on: %s (0 = no cap)", caps)
    return released


def import_handler(path: str) -> Handler:
    """Load ``package.module:function``; a clear error when it is not there."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"handler {path!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import handler module {module_name!r}: {exc}") from exc
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise ValueError(f"{module_name!r} has no callable {attr!r}")
    return handler  # type: ignore[no-any-return]
