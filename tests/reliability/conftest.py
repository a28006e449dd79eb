"""The fake Chatwoot's receiver, for every reliability scenario that takes ``chatwoot_mode``.

Real Chatwoot sends Sluice webhooks in one of two ways (docs/simulator.md): an account
webhook, sent once and never retried, or the inbox's agent bot, retried on 429/500 only,
whose final failure on a customer message opens the conversation for humans. A scenario
that asks for ``chatwoot_mode`` runs once per receiver, with the ids ``account`` and
``bot``.
"""

from __future__ import annotations

import pytest

from sluice.simulator import Mode

MODES: dict[str, Mode] = {"account": "account_webhook", "bot": "agent_bot"}


@pytest.fixture(params=list(MODES.values()), ids=list(MODES))
def chatwoot_mode(request: pytest.FixtureRequest) -> Mode:
    mode: Mode = request.param
    return mode
