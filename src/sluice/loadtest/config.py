"""What a load test offers: conversations, rate, bursts, think time, broker latency,
Chatwoot's faults and version."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sluice.simulator import Mode, TokenKind, profile_for
from sluice.simulator.versions import MODES

ACCOUNT = 7
LINES = (
    "Hi, where is my order #{n}?",
    "It was supposed to arrive yesterday.",
    "Can I change the delivery address?",
    "Do you ship to Norway?",
    "What are your opening hours?",
    "The tent pole is broken, can I return it?",
    "Which size should I take for the hiking boots?",
    "Thanks!",
)


@dataclass
class LoadConfig:
    conversations: int = 200
    rate: float = 30.0
    duration_s: float = 60.0
    broker_latency_ms: float = 200.0
    burst_probability: float = 0.15
    burst_max: int = 3
    think_s: tuple[float, float] = (0.2, 2.0)
    reply_timeout_s: float = 60.0
    # Customers arrive over this many seconds rather than all in the first instant (a
    # thousand conversations opened at once is a burst no real inbox sees).
    ramp_up_s: float = 0.0
    processes: int = 1
    seed: int = 1
    chatwoot_429_rate: float = 0.0
    chatwoot_500_rate: float = 0.0
    duplicate_delivery_rate: float = 0.0
    # The Chatwoot under test, sized for the offered load unless set (see chatwoot_sizing):
    # rack-attack's per-IP limit (RACK_ATTACK_LIMIT, requests per minute) and the webhook
    # delivery threads (Sidekiq's concurrency summed over its processes).
    chatwoot_rate_limit_per_min: int | None = None
    chatwoot_sidekiq_threads: int | None = None
    simulator_secret: str | None = None  # tests: sign webhooks with another secret
    # The fake Chatwoot: its version profile, who receives its webhooks, and whose token
    # Sluice gets (see the module docstring).
    chatwoot_version: str = "latest"
    mode: Mode = "account_webhook"
    api_token_kind: TokenKind = "user_admin"

    def __post_init__(self) -> None:
        parse_mode(self.mode)
        profile_for(self.chatwoot_version)  # ValueError for a version without a profile
        if self.api_token_kind not in ("user_admin", "user_agent", "bot"):
            raise ValueError("api_token_kind must be 'user_admin', 'user_agent' or 'bot'")

    def chatwoot_sizing(self) -> tuple[int, int]:
        """(RACK_ATTACK_LIMIT per minute, Sidekiq threads) of the Chatwoot under test.

        Chatwoot's defaults (3000 requests per minute per client IP in
        ``config/initializers/rack_attack.rb``; 10 Sidekiq threads in ``config/sidekiq.yml``)
        suit about 10 messages/s: Sluice makes up to four API calls per turn (typing on, the
        reply, typing off, sometimes a status or history read), all from one IP, and each
        customer message causes about five webhook deliveries. A Chatwoot that serves more
        raises both (the limit by environment, more Sidekiq processes), so unless the
        options say otherwise the load test's Chatwoot allows six calls per offered message
        and one delivery thread per two messages/s (five Sidekiq processes of ten threads
        at 100 messages/s), never below the defaults."""
        limit = self.chatwoot_rate_limit_per_min or max(3000, math.ceil(self.rate * 60 * 6))
        threads = self.chatwoot_sidekiq_threads or max(10, math.ceil(self.rate / 2))
        return limit, threads

    @property
    def replies_as_agent_bot(self) -> bool:
        """Whether Sluice should post as the agent bot with its user token: an agent bot
        receives the webhooks, and the token is not the bot's own."""
        return self.mode == "agent_bot" and self.api_token_kind != "bot"


def parse_mode(value: str) -> Mode:
    """A receiver name from the command line: ``account_webhook`` or ``agent_bot``."""
    for mode in MODES:
        if value == mode:
            return mode
    raise ValueError(f"mode must be one of {', '.join(MODES)}, not {value!r}")
