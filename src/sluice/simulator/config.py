"""Simulator settings: who may call it, where its webhooks go, and how badly it behaves.

The fault knobs (latency, random 429/500, the rack-attack style rate limit, webhook retries
and duplicate deliveries) exist because Sluice's SLA promises must hold against a Chatwoot
that is slow, throttles, fails and repeats itself, not only against a perfect one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

WebhookKind = Literal["account", "agent_bot"]


def default_agents() -> list[dict[str, Any]]:
    """Two agents; the first owns ``api_token`` (the user token), like a Profile token."""
    return [
        {
            "id": 23,
            "name": "Tomás Reyes",
            "email": "tomas.reyes@acme-outdoor.example",
            "role": "administrator",
            "availability_status": "online",
        },
        {
            "id": 24,
            "name": "Priya Natarajan",
            "email": "priya.natarajan@acme-outdoor.example",
            "role": "agent",
            "availability_status": "online",
        },
    ]


@dataclass
class SimulatorConfig:
    """Everything the fake Chatwoot needs; all defaults give a well-behaved instance.

    Mutable on purpose: a harness often learns the receiver's URL only after the simulator
    is serving, so ``webhook_url``, ``webhook_secret``, the fault rates, ``latency_ms`` and
    ``rate_limit_per_min`` are read at each use and may be changed while running
    (``accounts``, ``agents`` and the tokens are read once at construction).

    - ``api_token``: a *user* token (the first agent); ``bot_token``: an agent-bot token,
      limited to the endpoints Chatwoot lets bots call.
    - ``webhook_url``/``webhook_secret``: where events go and whether they are signed.
    - ``webhook_kind``: ``account`` sends ``conversation_created``,
      ``conversation_status_changed`` and ``conversation_updated``; ``agent_bot`` sends what
      an Agent Bot ``outgoing_url`` gets (``conversation_opened``/``conversation_resolved``,
      no ``conversation_created``). Messages are ``message_created`` in both.
    - ``webhook_attempts``/``webhook_retry_delay_s``: Chatwoot's agent-bot policy (3
      attempts, 3 s apart, only on 429/500; a timeout is not retried). Account webhooks get
      one attempt in real Chatwoot: set ``webhook_attempts=1`` to model that.
    - ``duplicate_delivery_rate``: probability of sending a webhook a second time with the
      same ``X-Chatwoot-Delivery`` (per call there is also ``duplicate=True``).
    - ``latency_ms``: uniform (min, max) added to every API request; ``rate_429``/``rate_500``:
      probability of an injected error; ``rate_limit_per_min``: per client IP, fixed
      one-minute windows, like rack-attack.
    - ``open_on_bot_failure``: a finally failed webhook for an incoming message moves a
      ``pending`` conversation to ``open`` with an activity message (Chatwoot >= 4.7).
    """

    api_token: str = "sim-token"
    bot_token: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    accounts: tuple[int, ...] = (7,)
    agents: list[dict[str, Any]] = field(default_factory=default_agents)
    latency_ms: tuple[float, float] = (0, 0)
    rate_429: float = 0
    rate_500: float = 0
    rate_limit_per_min: int = 3000
    seed: int = 0
    webhook_kind: WebhookKind = "account"
    webhook_timeout_s: float = 5.0
    webhook_attempts: int = 3
    webhook_retry_delay_s: float = 3.0
    duplicate_delivery_rate: float = 0.0
    injected_retry_after_s: float = 1.0
    bot_id: int = 4
    bot_name: str = "Sluice Bot"
    inbox_has_bot: bool = True
    open_on_bot_failure: bool = False

    def __post_init__(self) -> None:
        if not self.api_token:
            raise ValueError("api_token must not be empty")
        if self.bot_token is not None and self.bot_token == self.api_token:
            raise ValueError("bot_token must differ from api_token")
        if not self.accounts:
            raise ValueError("at least one account is needed")
        if not self.agents:
            raise ValueError("at least one agent is needed (the api_token's user)")
        for name in ("rate_429", "rate_500", "duplicate_delivery_rate"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.rate_429 + self.rate_500 > 1:
            raise ValueError("rate_429 + rate_500 must not exceed 1")
        low, high = self.latency_ms
        if low < 0 or high < low:
            raise ValueError("latency_ms must be (min, max) with 0 <= min <= max")
        if self.webhook_attempts < 1:
            raise ValueError("webhook_attempts must be >= 1")
        if self.rate_limit_per_min < 1:
            raise ValueError("rate_limit_per_min must be >= 1")
