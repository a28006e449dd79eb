"""A faithful fake Chatwoot for demos, load tests and end-to-end tests.

Chatwoot (Rails, Postgres, Sidekiq) cannot run here, so this in-memory stand-in implements
the parts of the contract Sluice depends on - the REST subset, token and bot-token auth,
errors, rate limiting, and signed, retried, sometimes duplicated webhooks - and adds what a
test needs: drivers that play customer and agent, fault injection, call recording and
``wait_for_reply``.
"""

from __future__ import annotations

from sluice.simulator.config import SimulatorConfig, WebhookKind, default_agents
from sluice.simulator.core import ApiCall, ChatwootSimulator, Fault, run_simulator
from sluice.simulator.webhooks import Delivery

__all__ = [
    "ApiCall",
    "ChatwootSimulator",
    "Delivery",
    "Fault",
    "SimulatorConfig",
    "WebhookKind",
    "default_agents",
    "run_simulator",
]
