"""A faithful fake Chatwoot for demos, load tests and end-to-end tests.

Chatwoot (Rails, Postgres, Sidekiq) cannot run here, so this in-memory stand-in implements
the parts of real Chatwoot Sluice depends on - the REST subset, token and bot-token auth,
errors, rate limiting, webhooks with Chatwoot's delivery, signing and side effects - per
Chatwoot version (``SimulatorConfig.chatwoot_version``) and per receiver
(``SimulatorConfig.mode``), and adds what a test needs: drivers that play customer and agent,
fault injection, call recording and ``wait_for_reply``. The rules and their sources are
listed in ``docs/simulator.md``.
"""

from __future__ import annotations

from sluice.simulator.changes import Emission
from sluice.simulator.config import SimulatorConfig, TokenKind, WebhookKind, default_agents
from sluice.simulator.core import ApiCall, ChatwootSimulator, Fault, run_simulator
from sluice.simulator.versions import LATEST_VERSION, VERSIONS, Mode, VersionProfile, profile_for
from sluice.simulator.webhooks import Delivery

__all__ = [
    "LATEST_VERSION",
    "VERSIONS",
    "ApiCall",
    "ChatwootSimulator",
    "Delivery",
    "Emission",
    "Fault",
    "Mode",
    "SimulatorConfig",
    "TokenKind",
    "VersionProfile",
    "WebhookKind",
    "default_agents",
    "profile_for",
    "run_simulator",
]
