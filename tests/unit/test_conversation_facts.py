"""Reading a conversation's promises from a webhook is lenient: any JSON in any of the
fields it reads gives "unknown", never an exception (the ids are checked elsewhere), and
well-formed fields read as Chatwoot writes them."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.chatwoot.conversation_facts import read_facts

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ("waiting_since", "created_at", "first_reply_created_at", "labels", "channel",
          "inbox_id", "applied_sla", "meta")  # fmt: skip
SLA_FIELDS = ("sla_first_response_time_threshold", "sla_next_response_time_threshold",
              "sla_only_during_business_hours", "sla_frt_due_at", "sla_nrt_due_at",
              "sla_name")  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={f: JSON for f in FIELDS}),
       st.fixed_dictionaries({}, optional={f: JSON for f in SLA_FIELDS}))  # fmt: skip
def test_any_json_reads_as_unknown_never_an_error(
    conversation: dict[str, Any], sla: dict[str, Any]
) -> None:
    if sla:
        conversation = {**conversation, "applied_sla": sla}
    read_facts({"sender": {"custom_attributes": {"tier": 1}}}, conversation, None)


def test_chatwoots_shapes_read_as_written() -> None:
    facts = read_facts(
        {},
        {
            "waiting_since": 1_780_000_000, "created_at": 1_779_990_000,
            "first_reply_created_at": "2026-05-28T20:00:00.000Z", "labels": ["billing", 3],
            "channel": "Channel::Email", "inbox_id": 4,
            "meta": {"sender": {"custom_attributes": {"tier": "vip"}}},
            "applied_sla": {"sla_name": "Gold", "sla_first_response_time_threshold": 60.0,
                            "sla_next_response_time_threshold": None,
                            "sla_only_during_business_hours": True,
                            "sla_frt_due_at": 1_779_990_060},
        },
        "high",
    )  # fmt: skip
    assert facts.waiting_since_ms == 1_780_000_000_000 and facts.created_ms == 1_779_990_000_000
    assert (
        facts.labels == ("billing",) and facts.channel == "Channel::Email" and facts.inbox_id == 4
    )
    assert facts.contact == {"tier": "vip"} and facts.priority == "high"
    assert facts.first_reply_ms is not None
    assert facts.sla is not None and facts.sla.first_response_s == 60.0
    assert facts.sla.next_response_s is None and facts.sla.business_hours_only
    assert facts.sla.frt_due_ms == 1_779_990_060_000
    assert read_facts({}, {"waiting_since": 0}, None).waiting_since_ms is None  # nil.to_i
