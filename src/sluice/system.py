"""Building the Chatwoot reply pipeline of a worker process from its settings."""

from __future__ import annotations

from sluice.app import Runtime
from sluice.broker.assignment import Assigner
from sluice.broker.base import Handler
from sluice.broker.config import load_brokers_from_env
from sluice.broker.handlers import get_handler, load_handler_settings
from sluice.chatwoot.client import ChatwootClient
from sluice.config import ConfigError
from sluice.conversations import Conversations
from sluice.pipeline import ReplyPipeline

PIPELINE = "pipeline"


def build_pipeline(runtime: Runtime) -> tuple[ReplyPipeline, ChatwootClient]:
    """The pipeline and its Chatwoot client (close it at shutdown)."""
    s = runtime.settings
    if not s.chatwoot_url or s.chatwoot_api_token is None:
        raise ConfigError(
            "CHATWOOT_URL and CHATWOOT_API_TOKEN are needed to send replies "
            "(or run `sluice up --demo`, which starts a Chatwoot simulator)",
            ("CHATWOOT_URL", "CHATWOOT_API_TOKEN"),
        )
    client = ChatwootClient(s.chatwoot_url, s.chatwoot_api_token.get_secret_value())
    brokers = load_brokers_from_env()
    handler_settings = load_handler_settings()
    handlers: dict[str, Handler] = {}
    for name in {b.handler for b in brokers} | {"handoff"}:
        handlers[name] = get_handler(name, handler_settings)
    queue = runtime.queue
    pipeline = ReplyPipeline(
        client=client,
        conversations=Conversations(queue.redis, queue.keys, answer_open=s.chatwoot_answer_open),
        assigner=Assigner(queue.redis, queue.keys, brokers),
        handlers=handlers,
        sla_budget_ms=s.sla_warning_threshold_ms,
        handoff_budget_ms=s.handoff_budget_ms,
        agent_bot_id=s.chatwoot_agent_bot_id,
    )
    return pipeline, client
