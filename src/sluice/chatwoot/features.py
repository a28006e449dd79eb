"""What a Chatwoot release does that matters to Sluice, by version.

Chatwoot reports its version at ``GET /api`` (``ApiController#index`` renders
``Chatwoot.config[:version]``; no token needed). The thresholds below come from
``docs/chatwoot-facts.md``: releases marked *inferred* there are inferred from merge dates,
not confirmed against a release tag, and are shown as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

Version = tuple[int, int, int]

_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: object) -> Version | None:
    """``(major, minor, patch)`` from ``"4.11.2"``, ``"v4.13"`` or ``"4.16.2-ce"``."""
    if not isinstance(text, str):
        return None
    match = _VERSION.match(text.strip())
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def format_version(version: Version) -> str:
    return ".".join(str(part) for part in version)


# Signing (facts §2): account webhooks from 4.11.2 (PR #13573, confirmed in issue #13862),
# agent bots and API inboxes from 4.13.0 (PR #13892, confirmed).
ACCOUNT_WEBHOOKS_SIGNED: Final[Version] = (4, 11, 2)
AGENT_BOTS_SIGNED: Final[Version] = (4, 13, 0)
# SafeFetch refuses private/loopback webhook URLs from 4.14.0 (PR #14155, confirmed in issue
# #14489) unless SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true (PR #14548).
PRIVATE_URLS_REFUSED: Final[Version] = (4, 14, 0)


@dataclass(frozen=True)
class Feature:
    """One behaviour that arrived in ``since``; ``inferred`` when that release is inferred
    from a merge date rather than confirmed."""

    name: str
    since: Version
    source: str
    inferred: bool = False

    def label(self) -> str:
        release = format_version(self.since)
        return f"{self.name} ({release}{', inferred' if self.inferred else ''})"


FEATURES: Final = (
    Feature("account webhooks signed", ACCOUNT_WEBHOOKS_SIGNED, "PR #13573"),
    Feature("agent-bot deliveries retried on 429/500", (4, 11, 0), "PR #13521", inferred=True),
    Feature("keep_pending_on_bot_failure honoured", (4, 11, 0), "PR #13512", inferred=True),
    Feature("bots may show typing", (4, 12, 0), "PR #13705", inferred=True),
    Feature("agent bots signed", AGENT_BOTS_SIGNED, "PR #13892"),
    Feature(
        "bots get conversation_status_changed/_updated", (4, 13, 0), "PR #14002", inferred=True
    ),
    Feature("private webhook URLs refused", PRIVATE_URLS_REFUSED, "PR #14155"),
    Feature("bots may read a conversation", (4, 15, 0), "PR #14655", inferred=True),
    Feature("bot-owned pending conversations", (4, 16, 0), "PR #14875", inferred=True),
)


def features_of(version: Version) -> tuple[list[Feature], list[Feature]]:
    """The features ``version`` has, and those it lacks."""
    has = [f for f in FEATURES if version >= f.since]
    lacks = [f for f in FEATURES if version < f.since]
    return has, lacks


def signs(version: Version | None, receiver: str) -> bool | None:
    """Whether deliveries to ``receiver`` (``"agent_bot"`` or ``"account_webhook"``) are
    signed by this version; None when the version is unknown."""
    if version is None:
        return None
    first = AGENT_BOTS_SIGNED if receiver == "agent_bot" else ACCOUNT_WEBHOOKS_SIGNED
    return version >= first
