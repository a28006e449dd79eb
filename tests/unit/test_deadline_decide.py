"""The deadline decision (sluice.deadlines.decide): where the clock starts, when
waiting_since is not believed, which SLA threshold applies, and that the earliest promise
wins. Times are epoch ms; Chatwoot's clock runs OFFSET behind Sluice's here, so every
test also checks that Chatwoot's times are mapped onto Sluice's."""

from __future__ import annotations

from sluice.deadlines.business_hours import DayHours, WorkingHours
from sluice.deadlines.decide import DeadlinePolicy, decide
from sluice.deadlines.facts import AppliedSla, ConversationFacts
from sluice.deadlines.rules import parse_rules

NOW = 1_780_000_000_000.0  # Sluice's clock when the customer wrote
OFFSET = 250.0  # Chatwoot's clock is 250 ms behind
CW_NOW = NOW - OFFSET
ON = DeadlinePolicy(from_waiting_since=True, from_sla=True)


def run(policy: DeadlinePolicy, facts: ConversationFacts, answered: float = 0.0, **kw: object):  # type: ignore[no-untyped-def]
    return decide(
        policy, facts, written_ms=NOW, chatwoot_written_ms=CW_NOW, answered_ms=answered, **kw
    )  # type: ignore[arg-type]


def test_switched_off_nothing_changes() -> None:
    facts = ConversationFacts(priority="urgent", waiting_since_ms=CW_NOW - 4000)
    d = run(DeadlinePolicy(), facts)
    assert (d.klass, d.due_ms, d.source, d.clock_note) == ("urgent", None, "priority", "message")
    assert run(DeadlinePolicy(), ConversationFacts()).source == "default"


def test_the_clock_starts_at_the_first_unanswered_line() -> None:
    d = run(ON, ConversationFacts(waiting_since_ms=CW_NOW - 4000))
    assert d.clock_note == "waiting_since"
    assert d.clock_start_ms == NOW - 4000
    assert d.due_ms == NOW - 4000 + 10_000  # normal: 10 s from the first line
    assert d.due_in_ms(NOW) == 6000


def test_waiting_since_before_sluices_last_answer_is_stale() -> None:
    # Before 4.16 a bot reply does not clear waiting_since: it still names an answered line.
    d = run(ON, ConversationFacts(waiting_since_ms=CW_NOW - 60_000), answered=NOW - 5000)
    assert d.clock_note == "waiting_since ignored: before Sluice's last answer"
    assert d.due_ms is None and d.notable


def test_absurd_waiting_since_is_not_believed() -> None:
    future = run(ON, ConversationFacts(waiting_since_ms=CW_NOW + 60_000))
    assert future.clock_note == "waiting_since ignored: after the message"
    ancient = run(ON, ConversationFacts(waiting_since_ms=CW_NOW - 2 * 86_400_000))
    assert ancient.clock_note == "waiting_since ignored: older than 3600 s"
    assert future.due_ms is None and ancient.due_ms is None


def test_an_overdue_deadline_is_due_now_never_before() -> None:
    d = run(ON, ConversationFacts(waiting_since_ms=CW_NOW - 50_000))
    assert d.due_ms is not None and d.due_ms < NOW
    assert d.due_in_ms(NOW) == 0


def sla(**kw: object) -> AppliedSla:
    base: dict[str, object] = {"name": "gold", "first_response_s": 4.0, "next_response_s": 3.0,
                               "business_hours_only": False}  # fmt: skip
    return AppliedSla(**(base | kw))  # type: ignore[arg-type]


def test_first_response_counts_from_the_conversations_creation() -> None:
    facts = ConversationFacts(sla=sla(), created_ms=CW_NOW - 1000)
    d = run(ON, facts)
    assert d.source == "applied_sla:first_response"
    assert d.due_ms == NOW - 1000 + 4000


def test_after_a_reply_the_next_response_threshold_applies() -> None:
    human = ConversationFacts(
        sla=sla(), first_reply_ms=CW_NOW - 9000, waiting_since_ms=CW_NOW - 1000
    )
    d = run(ON, human)
    assert d.source == "applied_sla:next_response" and d.due_ms == NOW - 1000 + 3000
    # Sluice's own answer counts as a reply too (first_reply_created_at: a human's only).
    bot = ConversationFacts(sla=sla(), waiting_since_ms=CW_NOW - 1000)
    assert run(ON, bot, answered=NOW - 2000).source == "applied_sla:next_response"


def test_chatwoots_own_due_time_is_used_when_the_webhook_carries_it() -> None:
    facts = ConversationFacts(sla=sla(nrt_due_ms=CW_NOW + 1500), first_reply_ms=CW_NOW - 9000)
    d = run(ON, facts)
    assert d.due_ms == NOW + 1500 and d.sla_note == "Chatwoot's sla_nrt_due_at"


def test_the_earliest_promise_wins() -> None:
    # A lax SLA (an hour) never loosens an urgent conversation's class.
    lax = ConversationFacts(priority="urgent", sla=sla(first_response_s=3600.0), created_ms=CW_NOW)
    assert run(ON, lax).source == "priority"
    tight = ConversationFacts(priority="low", sla=sla(), created_ms=CW_NOW)
    assert run(ON, tight).source == "applied_sla:first_response"


def test_business_hours_use_the_inboxs_hours_when_known() -> None:
    minute = {d: DayHours(open_minute=0, close_minute=1) for d in range(7)}
    closed_now = WorkingHours(enabled=True, timezone="UTC", days=minute)
    policy = sla(first_response_s=30.0, business_hours_only=True)
    facts = ConversationFacts(sla=policy, created_ms=CW_NOW, inbox_id=3, priority="low")
    unknown = run(ON, facts)
    assert unknown.sla_note == "business hours unknown: counted as plain time"
    known = run(ON, facts, hours=lambda inbox: closed_now)
    # Counted in open minutes only (one a day): later than the class's 30 s, so the class wins.
    assert known.source == "priority" and known.due_ms is None


def test_a_rule_sets_class_and_target() -> None:
    rules = parse_rules(
        "rules:\n  - name: vip\n    when: {contact: {tier: vip}}\n"
        "    class: urgent\n    target_s: 1.5\n"
    )
    policy = DeadlinePolicy(rules=rules)
    d = run(policy, ConversationFacts(contact={"tier": "vip"}, priority="low"))
    assert (d.klass, d.target_ms, d.source, d.due_ms) == ("urgent", 1500, "rule:vip", None)
    assert d.notable


def test_chatwoots_next_response_due_time_is_stale_after_sluices_answer() -> None:
    """Even with the waiting_since switch off, Chatwoot's sla_nrt_due_at counted from a
    waiting_since older than Sluice's last answer (before 4.16) is not used."""
    policy = DeadlinePolicy(from_sla=True)
    stale = sla(nrt_due_ms=CW_NOW - 57_000)  # from a waiting_since of 60 s ago
    facts = ConversationFacts(sla=stale, waiting_since_ms=CW_NOW - 60_000)
    d = run(policy, facts, answered=NOW - 5000)
    assert d.source == "applied_sla:next_response" and d.due_ms == NOW + 3000
    assert d.sla_note == "threshold; Chatwoot's sla_nrt_due_at stale"


def test_before_any_reply_only_the_first_response_threshold_counts() -> None:
    nrt_only = ConversationFacts(sla=sla(first_response_s=None), created_ms=CW_NOW)
    assert run(ON, nrt_only).source == "default"
