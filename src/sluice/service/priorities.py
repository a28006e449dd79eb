"""Which Sluice class a message gets from its Chatwoot conversation's priority.

An agent (or an automation rule) marks a conversation urgent/high/medium/low in Chatwoot;
that is what the account promised the customer, so the message is scheduled against the
matching class's target (:mod:`sluice.queue.priority`): urgent 2 s, high 5 s, normal 10 s,
low 30 s by default. Chatwoot's ``medium`` is Sluice's ``normal``; a conversation without a
priority gets ``normal``. ``SLUICE_PRIORITY_FROM_CHATWOOT=false`` gives every message
``normal`` (the behaviour before).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

DEFAULT_CLASS: Final = "normal"

CHATWOOT_PRIORITY_CLASSES: Final[Mapping[str, str]] = {
    "urgent": "urgent",
    "high": "high",
    "medium": "normal",
    "low": "low",
}


def class_for(chatwoot_priority: str | None, *, enabled: bool = True) -> str:
    """The Sluice class for a conversation's Chatwoot priority (None: not set)."""
    if not enabled or chatwoot_priority is None:
        return DEFAULT_CLASS
    return CHATWOOT_PRIORITY_CLASSES.get(chatwoot_priority, DEFAULT_CLASS)
