"""Simulator settings: which Chatwoot it is, who may call it, where its webhooks go, and how
badly its infrastructure behaves.

Chatwoot's behaviour (retries, signing, which events a receiver gets, what a bot token may
call, assignment side effects) is *not* configurable here one knob at a time: it follows the
version profile (``chatwoot_version``, see :mod:`sluice.simulator.versions`) and the delivery
``mode``. What remains configurable is what a Chatwoot installation itself lets you set
(``WEBHOOK_TIMEOUT``, ``SAFE_FETCH_ALLOW_PRIVATE_NETWORK``, ``keep_pending_on_bot_failure``,
webhook subscriptions, tokens, agents) and the faults of the network around it (latency,
random 429/500, the rack-attack limit, duplicate job runs).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from sluice.simulator.versions import ACCOUNT_EVENTS, LATEST_VERSION, MODES, Mode, profile_for

WebhookKind = Literal["account", "agent_bot"]
TokenKind = Literal["user_admin", "user_agent", "bot"]
AVAILABILITIES = ("online", "busy", "offline")  # AccountUser.availability enum (facts §7)

_KIND_TO_MODE: dict[str, Mode] = {"account": "account_webhook", "agent_bot": "agent_bot"}
_MODE_TO_KIND: dict[str, WebhookKind] = {"account_webhook": "account", "agent_bot": "agent_bot"}


def default_agents() -> list[dict[str, Any]]:
    """Two agents, both with a live dashboard session: an administrator (who owns
    ``api_token`` by default) and an agent. ``availability_status`` is the stored status,
    ``presence`` whether a dashboard/app session is connected (without one Chatwoot reports
    ``offline``, facts §7)."""
    return [
        {
            "id": 23,
            "name": "Tomás Reyes",
            "email": "tomas.reyes@acme-outdoor.example",
            "role": "administrator",
            "availability_status": "online",
            "presence": True,
        },
        {
            "id": 24,
            "name": "Priya Natarajan",
            "email": "priya.natarajan@acme-outdoor.example",
            "role": "agent",
            "availability_status": "online",
            "presence": True,
        },
    ]


@dataclass
class SimulatorConfig:
    """Everything the fake Chatwoot needs; all defaults give a well-behaved latest Chatwoot
    with an account webhook.

    Mutable on purpose: a harness often learns the receiver's URL only after the simulator
    is serving, so ``webhook_url``, ``webhook_secret``, ``mode``, ``chatwoot_version``, the
    fault rates, ``latency_ms`` and ``rate_limit_per_min`` are read at each use and may be
    changed while running (``accounts``, ``agents`` and the tokens are read at
    construction). Set ``mode`` and ``chatwoot_version`` as fields, not ``webhook_kind``,
    once the simulator runs.

    Chatwoot:

    - ``chatwoot_version``: ``"4.10"`` ... ``"4.16"`` (default, the latest) or ``"latest"``.
    - ``mode``: who receives webhooks. ``"account_webhook"``: an account webhook subscribed
      to ``webhook_subscriptions`` (None = every event), one attempt per delivery.
      ``"agent_bot"``: the agent bot linked to the inbox (``bot_id``), with the events and
      the retry policy a bot gets in that version. ``webhook_kind`` (``"account"`` /
      ``"agent_bot"``) is the older name, still accepted.
    - ``api_token`` and its owner ``api_token_kind``: ``"user_admin"`` (the first agent whose
      role is administrator), ``"user_agent"`` (the first with role agent) or ``"bot"``
      (the agent bot). ``bot_token``: a second token, the bot's. ``user_tokens``: more user
      tokens, token -> agent id (the agent's role decides what toggle_status does).
    - ``webhook_timeout_s``: ``WEBHOOK_TIMEOUT`` (5 s by default, PR #12777): the open and
      the read timeout of one attempt's request.
    - ``webhook_concurrency``: how many delivery jobs run at once, Sidekiq's concurrency
      (``SIDEKIQ_CONCURRENCY``, 10 in Chatwoot's ``config/sidekiq.yml``). A job beyond it
      waits in the Sidekiq queue, and that wait is not part of any timeout; the agent bot's
      ``retry_on ... wait: 3.seconds`` re-enqueues the job, so a waiting retry holds no slot.
    - ``keep_pending_on_bot_failure``: the account setting (PR #13512, 4.11+).
    - ``safe_fetch_allow_private_network``: ``SAFE_FETCH_ALLOW_PRIVATE_NETWORK`` (PR #14548);
      False makes 4.14+ refuse loopback and private webhook URLs as Chatwoot's SSRF filter
      does. True by default: the simulator's receivers are on loopback.
    - ``inbox_has_bot``: the inbox has an active agent bot (new conversations start
      ``pending``; from 4.16 owned by the bot).

    Test and fault knobs:

    - ``webhook_retry_delay_s``: the agent-bot job's 3 s wait between attempts (shorten it
      in tests).
    - ``duplicate_delivery_rate``: probability that a delivery job runs twice (same
      ``X-Chatwoot-Delivery``); per call there is also ``duplicate=True``.
    - ``latency_ms``: uniform (min, max) added to every API request; ``rate_429``/``rate_500``:
      probability of an injected error; ``rate_limit_per_min``: per client IP, fixed
      one-minute windows, like rack-attack.

    ``webhook_attempts`` and ``open_on_bot_failure`` are accepted for compatibility and
    ignored (with a DeprecationWarning): the attempts and the failure handling follow the
    version and the mode.
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
    webhook_kind: WebhookKind | None = None
    webhook_timeout_s: float = 5.0
    webhook_concurrency: int = 10
    webhook_attempts: int | None = None
    webhook_retry_delay_s: float = 3.0
    duplicate_delivery_rate: float = 0.0
    injected_retry_after_s: float = 1.0
    bot_id: int = 4
    bot_name: str = "Sluice Bot"
    inbox_has_bot: bool = True
    open_on_bot_failure: bool | None = None
    chatwoot_version: str = LATEST_VERSION
    mode: Mode = "account_webhook"
    webhook_subscriptions: tuple[str, ...] | None = None
    keep_pending_on_bot_failure: bool = False
    safe_fetch_allow_private_network: bool = True
    api_token_kind: TokenKind = "user_admin"
    user_tokens: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.webhook_kind is not None:  # the older name of `mode`
            if self.webhook_kind not in _KIND_TO_MODE:
                raise ValueError("webhook_kind must be 'account' or 'agent_bot'")
            self.mode = _KIND_TO_MODE[self.webhook_kind]
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.webhook_kind = _MODE_TO_KIND[self.mode]
        if self.chatwoot_version == "latest":
            self.chatwoot_version = LATEST_VERSION
        profile_for(self.chatwoot_version)  # raises ValueError for an unknown version
        for legacy in ("webhook_attempts", "open_on_bot_failure"):
            if getattr(self, legacy) is not None:
                warnings.warn(
                    f"SimulatorConfig.{legacy} is ignored: attempts and bot-failure handling "
                    "follow chatwoot_version and mode",
                    DeprecationWarning,
                    stacklevel=3,
                )
        self._check_tokens()
        self._check_agents()
        if self.webhook_subscriptions is not None:
            unknown = set(self.webhook_subscriptions) - ACCOUNT_EVENTS
            if unknown or not self.webhook_subscriptions:
                # Webhook validation: a non-empty subset of ALLOWED_WEBHOOK_EVENTS (facts §9).
                raise ValueError(f"invalid webhook_subscriptions {sorted(unknown)}")
        for name in ("rate_429", "rate_500", "duplicate_delivery_rate"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.rate_429 + self.rate_500 > 1:
            raise ValueError("rate_429 + rate_500 must not exceed 1")
        low, high = self.latency_ms
        if low < 0 or high < low:
            raise ValueError("latency_ms must be (min, max) with 0 <= min <= max")
        if self.rate_limit_per_min < 1:
            raise ValueError("rate_limit_per_min must be >= 1")
        if self.webhook_retry_delay_s < 0 or self.webhook_timeout_s <= 0:
            raise ValueError("webhook_retry_delay_s must be >= 0, webhook_timeout_s > 0")
        if self.webhook_concurrency < 1:
            raise ValueError("webhook_concurrency must be >= 1")

    def _check_tokens(self) -> None:
        if not self.api_token:
            raise ValueError("api_token must not be empty")
        if self.bot_token is not None and self.bot_token == self.api_token:
            raise ValueError("bot_token must differ from api_token")
        if self.api_token_kind not in ("user_admin", "user_agent", "bot"):
            raise ValueError("api_token_kind must be 'user_admin', 'user_agent' or 'bot'")
        for token in self.user_tokens:
            if token in (self.api_token, self.bot_token) or not token:
                raise ValueError("user_tokens must be non-empty and differ from the other tokens")

    def _check_agents(self) -> None:
        if not self.accounts:
            raise ValueError("at least one account is needed")
        if not self.agents:
            raise ValueError("at least one agent is needed (the api_token's user)")
        ids = {int(agent["id"]) for agent in self.agents}
        for agent in self.agents:
            if agent.get("role", "agent") not in ("agent", "administrator"):
                raise ValueError("agent roles are 'agent' or 'administrator'")
            if agent.get("availability_status", "online") not in AVAILABILITIES:
                raise ValueError(f"availability_status must be one of {AVAILABILITIES}")
        if self.api_token_kind != "bot":
            self.token_owner()  # raises when no agent has the role
        for user_id in self.user_tokens.values():
            if user_id not in ids:
                raise ValueError(f"user_tokens names agent {user_id}, who is not in agents")

    def token_owner(self) -> int:
        """The agent id behind ``api_token`` (for a bot token: the first agent, whose name
        the driver ``agent_message`` uses by default)."""
        if self.api_token_kind == "bot":
            return int(self.agents[0]["id"])
        role = "administrator" if self.api_token_kind == "user_admin" else "agent"
        for agent in self.agents:
            if agent.get("role", "agent") == role:
                return int(agent["id"])
        raise ValueError(f"api_token_kind {self.api_token_kind!r} needs an agent with role {role}")
