"""Chatwoot version profiles: what each release does differently, in one table.

Every behaviour that changed between releases is a field of :class:`VersionProfile`, set
from the first version that has it. The sources are ``docs/chatwoot-facts.md`` (file and PR
of real Chatwoot); releases marked *inferred* there are inferred from merge dates, not
confirmed against a tag. Profiles are named ``"4.10"`` ... ``"4.16"``; ``"4.11"`` stands for
4.11.2 and later (signing arrived in 4.11.2).

The simulator reads nothing version-dependent from anywhere else: the delivery mode
(account webhook or agent bot) and the version together decide which events are sent, how
deliveries are retried and signed, which endpoints a bot token may call, and how
assignments and status changes ripple through a conversation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final, Literal

Mode = Literal["account_webhook", "agent_bot"]
MODES: Final = ("account_webhook", "agent_bot")

VERSIONS: Final = ("4.10", "4.11", "4.12", "4.13", "4.14", "4.15", "4.16")
LATEST_VERSION: Final = VERSIONS[-1]

# app/models/webhook.rb ALLOWED_WEBHOOK_EVENTS (facts §9); the typing events came later, in a
# release not determined, so every profile has them.
ACCOUNT_EVENTS: Final = frozenset(
    {
        "conversation_status_changed",
        "conversation_updated",
        "conversation_created",
        "contact_created",
        "contact_updated",
        "message_created",
        "message_updated",
        "webwidget_triggered",
        "inbox_created",
        "inbox_updated",
        "conversation_typing_on",
        "conversation_typing_off",
    }
)
# app/listeners/agent_bot_listener.rb before #14002/#13975 (facts §3): no conversation_created,
# no pending status change, no conversation_updated.
BOT_EVENTS_BASE: Final = frozenset(
    {
        "conversation_resolved",
        "conversation_opened",
        "message_created",
        "message_updated",
        "webwidget_triggered",
    }
)

# (controller, action) pairs of AccessTokenAuthHelper::BOT_ACCESSIBLE_ENDPOINTS (facts §4).
Endpoint = tuple[str, str]
BOT_ENDPOINTS_BASE: Final[frozenset[Endpoint]] = frozenset(
    {
        ("conversations", "toggle_status"),  # the earliest entries
        ("messages", "create"),  # create only: never index (listing), in any version
        ("assignments", "create"),
        ("conversations", "toggle_priority"),
        ("conversations", "create"),
        ("conversations", "update"),
        ("conversations", "custom_attributes"),  # PR #11447 (2025-05)
    }
)
BOT_TYPING_ENDPOINTS: Final[frozenset[Endpoint]] = frozenset(
    {("conversations", "toggle_typing_status")}  # PR #13705, inferred 4.12
)
BOT_READ_ENDPOINTS: Final[frozenset[Endpoint]] = frozenset(
    {("conversations", "show"), ("labels", "index"), ("labels", "create")}  # PR #14655, 4.15
)


def _parse(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


@dataclass(frozen=True)
class VersionProfile:
    """What one Chatwoot release does; see the module docstring and docs/simulator.md."""

    version: str
    # lib/webhooks/trigger.rb request_headers, PR #13573 (4.11.2, confirmed in issue #13862):
    # account webhooks get X-Chatwoot-Delivery and, with a secret, the signature headers.
    account_webhooks_signed: bool
    # PR #13892 (4.13.0, confirmed): agent bots (and API inboxes) get their own secret, the
    # signature headers and X-Chatwoot-Delivery; before, the bot job got neither.
    bot_webhooks_signed: bool
    # app/jobs/agent_bots/webhook_job.rb after PR #13521 (inferred 4.11): retry_on
    # RetryableError (429/500 only), 3 attempts, 3 s apart, failure handling after the last.
    # Before, the retries never took effect and failure handling ran on the first failure.
    bot_attempts: int
    # Webhooks::Trigger#update_conversation_status reads account.keep_pending_on_bot_failure,
    # PR #13512 (merged 2026-02-11, inferred 4.11). Older releases always open.
    keep_pending_flag: bool
    # agent_bot_listener.rb: conversation_status_changed to bots, PR #14002 (inferred 4.13).
    bot_status_changed_event: bool
    # agent_bot_listener.rb: conversation_updated to bots, PR #13975 + #14001 (inferred 4.13).
    bot_updated_event: bool
    # BOT_ACCESSIBLE_ENDPOINTS gains toggle_typing_status, PR #13705 (inferred 4.12).
    bot_may_type: bool
    # BOT_ACCESSIBLE_ENDPOINTS gains conversations#show and labels index/create, PR #14655
    # (inferred 4.15).
    bot_may_read: bool
    # lib/safe_fetch (SsrfFilter), PR #14155 (4.14.0, confirmed in issue #14489): a webhook
    # URL resolving to a private or loopback address fails before any request, unless
    # SAFE_FETCH_ALLOW_PRIVATE_NETWORK (PR #14548).
    ssrf_filter: bool
    # PR #14875 (inferred 4.16): new conversations in a bot inbox are owned by the bot
    # (meta.assignee_type "AgentBot"); bot_handoff! and a human open clear the bot owner.
    bot_owned_conversations: bool
    # Conversations::AssignmentService, PR #14870 (inferred 4.16): assigning a human opens a
    # bot-owned pending conversation; assigning an AgentBot sets pending.
    assignment_status_effects: bool
    # Message#clear_waiting_since_on_outgoing_response ("newer versions", facts §3/§10) and
    # Conversation#bot_handoff! setting waiting_since: modelled from 4.16.
    bot_reply_clears_waiting_since: bool
    # Conversations::EventDataPresenter#webhook_data merging `account` (facts §3): the release
    # is not determinable (PR #12445 vs closed #14673). The stored upstream-like presenter is
    # the latest, so only 4.16 has it; older profiles exercise the consumer's fallback
    # (messages[0].account_id or configuration).
    conversation_account: bool
    # Messages::MessageBuilder stores content_attributes whole (PR #15907 shows custom keys
    # persisting). Old builders kept only items/in_reply_to, in a release not found; every
    # profile here keeps them.
    keeps_custom_content_attributes: bool

    def bot_events(self) -> frozenset[str]:
        """What an agent bot's outgoing_url receives in this version (facts §3)."""
        events = set(BOT_EVENTS_BASE)
        if self.bot_status_changed_event:
            events.add("conversation_status_changed")
        if self.bot_updated_event:
            events.add("conversation_updated")
        return frozenset(events)

    def receives(self, mode: Mode, event: str) -> bool:
        """Whether a receiver of ``mode`` gets ``event`` at all (before subscriptions)."""
        if mode == "agent_bot":
            return event in self.bot_events()
        # conversation_opened/resolved are not account-webhook events (issue #4539).
        return event in ACCOUNT_EVENTS

    def signed(self, mode: Mode) -> bool:
        """Whether deliveries carry X-Chatwoot-Delivery and (with a secret) a signature."""
        return self.bot_webhooks_signed if mode == "agent_bot" else self.account_webhooks_signed

    def attempts(self, mode: Mode) -> int:
        """Deliveries per job: account/API-inbox WebhookJob has no retry_on (issue #15920)."""
        return self.bot_attempts if mode == "agent_bot" else 1

    def bot_endpoints(self) -> frozenset[Endpoint]:
        endpoints = set(BOT_ENDPOINTS_BASE)
        if self.bot_may_type:
            endpoints |= BOT_TYPING_ENDPOINTS
        if self.bot_may_read:
            endpoints |= BOT_READ_ENDPOINTS
        return frozenset(endpoints)

    def bot_may(self, controller: str, action: str) -> bool:
        return (controller, action) in self.bot_endpoints()


@functools.cache
def profile_for(version: str) -> VersionProfile:
    """The profile of ``version`` (``"4.10"`` ... ``"4.16"`` or ``"latest"``)."""
    if version == "latest":
        version = LATEST_VERSION
    if version not in VERSIONS:
        raise ValueError(f"unknown Chatwoot version {version!r}; one of {', '.join(VERSIONS)}")
    v = _parse(version)

    def since(first: str) -> bool:
        return v >= _parse(first)

    return VersionProfile(
        version=version,
        account_webhooks_signed=since("4.11"),
        bot_webhooks_signed=since("4.13"),
        bot_attempts=3 if since("4.11") else 1,
        keep_pending_flag=since("4.11"),
        bot_status_changed_event=since("4.13"),
        bot_updated_event=since("4.13"),
        bot_may_type=since("4.12"),
        bot_may_read=since("4.15"),
        ssrf_filter=since("4.14"),
        bot_owned_conversations=since("4.16"),
        assignment_status_effects=since("4.16"),
        bot_reply_clears_waiting_since=since("4.16"),
        conversation_account=since("4.16"),
        keeps_custom_content_attributes=True,
    )
