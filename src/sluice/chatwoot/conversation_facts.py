"""Reading what a customer message's conversation promises from its webhook.

Read leniently from the ``conversation`` object of ``message_created``
(``Message#webhook_data`` -> ``conversation.webhook_data``, which is
``Conversations::EventDataPresenter#push_data``,
``app/presenters/conversations/event_data_presenter.rb``): a field that is absent or of an
unexpected type is simply unknown, never a reason to refuse the message (the ids are
checked strictly elsewhere, :mod:`sluice.chatwoot.payload_fields`).

- ``waiting_since``: Unix seconds, ``waiting_since.to_i`` so 0 when nil; set by
  ``Message#update_waiting_since`` on the first unanswered incoming message.
- ``first_reply_created_at``: ISO-8601 or nil; set on the first human reply.
- ``created_at``: Unix seconds (``push_timestamps``).
- ``labels``, ``channel`` (``inbox.channel_type``, e.g. ``Channel::WebWidget``),
  ``inbox_id``, ``meta.sender.custom_attributes`` (``Contact#push_event_data``).
- ``applied_sla``: only with the enterprise ``sla`` feature on the account
  (``enterprise/app/presenters/enterprise/conversations/event_data_presenter.rb`` merges
  ``applied_sla``, ``sla_events``, ``sla_policy_id``, nil when no SLA applies), shaped by
  ``AppliedSla#push_event_data`` (``enterprise/app/models/applied_sla.rb``): thresholds in
  seconds (``sla_first_response_time_threshold``, ``sla_next_response_time_threshold``),
  ``sla_only_during_business_hours``, and in newer versions the due times Chatwoot computed
  itself, business hours included (``sla_frt_due_at``, ``sla_nrt_due_at``, Unix seconds).
  Since the webhook carries the policy, no API call is needed for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sluice.chatwoot.payload_fields import InvalidPayload, epoch_ms, optional_id
from sluice.deadlines.facts import AppliedSla, ConversationFacts

# Anything before 2001 or after 2100 is not a Chatwoot timestamp (a typo, a ms/s mix-up).
_EARLIEST_MS = 978_307_200_000.0
_LATEST_MS = 4_102_444_800_000.0


def read_facts(
    top: Mapping[str, Any], conversation: Mapping[str, Any], priority: str | None
) -> ConversationFacts:
    """The facts of a ``message_created`` body (never raises)."""
    meta = conversation.get("meta")
    sender = meta.get("sender") if isinstance(meta, Mapping) else None
    if not isinstance(sender, Mapping):
        sender = top.get("sender") if isinstance(top.get("sender"), Mapping) else {}
    contact = sender.get("custom_attributes") if isinstance(sender, Mapping) else None
    labels = conversation.get("labels")
    channel = conversation.get("channel")
    inbox_id = optional_id(conversation.get("inbox_id"))
    if inbox_id is None:
        inbox = top.get("inbox")
        inbox_id = optional_id(inbox.get("id")) if isinstance(inbox, Mapping) else None
    return ConversationFacts(
        inbox_id=inbox_id,
        channel=channel if isinstance(channel, str) else None,
        labels=tuple(x for x in labels if isinstance(x, str)) if isinstance(labels, list) else (),
        contact=dict(contact) if isinstance(contact, Mapping) else {},
        priority=priority,
        waiting_since_ms=_time(conversation.get("waiting_since")),
        first_reply_ms=_time(conversation.get("first_reply_created_at")),
        created_ms=_time(conversation.get("created_at")),
        sla=_applied_sla(conversation.get("applied_sla")),
    )


def _applied_sla(value: object) -> AppliedSla | None:
    if not isinstance(value, Mapping):
        return None
    first = _seconds(value.get("sla_first_response_time_threshold"))
    nxt = _seconds(value.get("sla_next_response_time_threshold"))
    if first is None and nxt is None:
        return None  # a resolution-time-only policy promises nothing about a reply
    name = value.get("sla_name")
    return AppliedSla(
        name=name if isinstance(name, str) and name else f"sla {value.get('sla_id')}",
        first_response_s=first,
        next_response_s=nxt,
        business_hours_only=value.get("sla_only_during_business_hours") is True,
        frt_due_ms=_time(value.get("sla_frt_due_at")),
        nrt_due_ms=_time(value.get("sla_nrt_due_at")),
    )


def _seconds(value: object) -> float | None:
    """A threshold in seconds (Chatwoot stores floats); None when absent or absurd."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) and 0 < seconds <= 366 * 86_400 else None


def _time(value: object) -> float | None:
    """A Chatwoot timestamp as epoch ms; None when absent, 0 (``nil.to_i``) or absurd."""
    if value in (None, 0, "", 0.0):
        return None
    try:
        ms = epoch_ms(value, "time")
    except InvalidPayload:
        return None
    return ms if ms is not None and _EARLIEST_MS <= ms <= _LATEST_MS else None
