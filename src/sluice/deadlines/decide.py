"""A customer message's deadline, from what the customer and the account were promised.

Inputs: the message (when it was written, on Sluice's clock, and on Chatwoot's), its
conversation's facts (:mod:`sluice.deadlines.facts`) and when Sluice last answered that
conversation. Three switches (each off gives the deadline of before: the class's target
from when the message heads its lane):

1. **Rules** (``SLUICE_PRIORITY_RULES``, :mod:`sluice.deadlines.rules`): the first
   matching rule sets the class and/or the target; otherwise the Chatwoot priority's class
   (:mod:`sluice.service.priorities`).
2. **The clock starts at ``waiting_since``** (``SLUICE_DEADLINE_FROM_WAITING_SINCE``):
   Chatwoot's ``Message#update_waiting_since`` sets it on the customer's first unanswered
   message, so the third line of a burst is due when the first one is, not a target after
   the third. Not believed when it is in the future (a clock bug), older than
   ``max_wait_s``, or older than Sluice's own last answer to the conversation: before 4.16
   only a *human* reply clears it (``clear_waiting_since_on_outgoing_response``, see
   ``bot_reply_clears_waiting_since`` in :mod:`sluice.simulator.versions`), so after a bot
   answer it still names a line that was answered. The message's own time is used then.
3. **The SLA policy** (``SLUICE_DEADLINE_FROM_SLA``): an ``applied_sla`` with a first
   response threshold (no reply yet in the conversation: no human reply,
   ``first_reply_created_at`` empty, and no answer by Sluice) or a next response threshold
   (otherwise) gives a deadline; Chatwoot's own ``sla_frt_due_at`` / ``sla_nrt_due_at``
   when the webhook carries them (business hours already counted), else the threshold
   from the conversation's creation (first) or the clock start (next), in the inbox's
   working hours when the policy says ``only_during_business_hours`` and those hours are
   known (:mod:`sluice.deadlines.business_hours`; unknown: plain time, which is earlier).

The message's deadline is the **earliest** of the class/rule deadline (clock start +
target) and the SLA's: both are promises, an SLA can tighten the class but never loosen it
(an SLA of an hour does not let an urgent conversation wait an hour). A deadline already
past when the message arrives is due *now*: it goes before every later arrival, but not
before messages that were already late when it came (those keep their earlier deadlines),
so one conversation's old promise cannot starve the rest.

``source`` says which promise set the deadline: ``applied_sla:first_response``,
``applied_sla:next_response``, ``rule:<name>``, ``priority`` (Chatwoot's priority) or
``default``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sluice.deadlines.business_hours import WorkingHours
from sluice.deadlines.facts import ConversationFacts
from sluice.deadlines.rules import Rules, load_rules_file
from sluice.queue.priority import DEFAULT_TARGETS_MS
from sluice.service.priorities import CHATWOOT_PRIORITY_CLASSES, class_for
from sluice.settings.config import Settings

DEFAULT_MAX_WAIT_S = 3_600.0


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """The switches (all off: the behaviour before) and the class targets."""

    priority_from_chatwoot: bool = True
    from_waiting_since: bool = False
    from_sla: bool = False
    rules: Rules | None = None
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    targets_ms: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_TARGETS_MS))

    @property
    def active(self) -> bool:
        """Whether any of the deadline features is on (off: nothing is recorded)."""
        return self.from_waiting_since or self.from_sla or self.rules is not None


@dataclass(frozen=True, slots=True)
class Deadline:
    """The decision for one message. Times on Sluice's clock (epoch ms)."""

    klass: str
    target_ms: int | None  # a rule's target (None: the class's)
    due_ms: float | None  # the message's own deadline (None: class target from heading its lane)
    source: str
    clock_start_ms: float
    clock_note: str  # "message", "waiting_since", or why waiting_since was not believed
    sla_note: str = ""  # e.g. "business hours unknown", "already missed"

    def due_in_ms(self, received_ms: float) -> float | None:
        """Milliseconds from receipt to the deadline, never negative (see the module)."""
        return None if self.due_ms is None else max(0.0, self.due_ms - received_ms)

    @property
    def notable(self) -> bool:
        """Worth an event: a rule or an SLA decided, or waiting_since was refused."""
        return self.source not in ("priority", "default") or self.clock_note not in (
            "message",
            "waiting_since",
        )


def deadline_policy(settings: Settings, targets_ms: Mapping[str, int]) -> DeadlinePolicy:
    """The policy the settings ask for (the rules file was checked when they loaded)."""
    path = settings.priority_rules
    return DeadlinePolicy(
        priority_from_chatwoot=settings.priority_from_chatwoot,
        from_waiting_since=settings.deadline_from_waiting_since,
        from_sla=settings.deadline_from_sla,
        rules=load_rules_file(path) if path else None,
        max_wait_s=settings.waiting_since_max_age_s,
        targets_ms=dict(targets_ms),
    )


def decide(
    policy: DeadlinePolicy,
    facts: ConversationFacts,
    *,
    written_ms: float,
    chatwoot_written_ms: float,
    answered_ms: float = 0.0,
    hours: Callable[[int], WorkingHours | None] | None = None,
) -> Deadline:
    """The deadline of one message (see the module docstring). ``written_ms`` is when the
    customer wrote, on Sluice's clock; ``chatwoot_written_ms`` the same moment on
    Chatwoot's (its ``created_at``): their difference maps Chatwoot's times onto ours.
    ``answered_ms``: Sluice's last answer to the conversation (0: none). ``hours`` gives an
    inbox's working hours when known."""
    offset = written_ms - chatwoot_written_ms  # Chatwoot time + offset = Sluice time
    klass = class_for(facts.priority, enabled=policy.priority_from_chatwoot)
    known = facts.priority in CHATWOOT_PRIORITY_CLASSES
    source = "priority" if policy.priority_from_chatwoot and known else "default"
    target: int | None = None
    rule = policy.rules.first_match(facts) if policy.rules is not None else None
    if rule is not None:
        klass = rule.klass or klass
        target = rule.target_ms
        source = f"rule:{rule.name}"
    start, note = _clock_start(policy, facts, written_ms, offset, answered_ms)
    effective_target = target if target is not None else policy.targets_ms[klass]
    # Counted from the message itself, the engine's own rule stands (the target from when
    # the message heads its lane): no deadline of its own then.
    due: float | None = start + effective_target if note == "waiting_since" else None
    sla_note = ""
    if policy.from_sla and facts.sla is not None:
        sla_due, kind, sla_note = _sla_due(facts, start, offset, answered_ms, note, hours)
        class_due = due if due is not None else written_ms + effective_target
        if sla_due is not None and sla_due < class_due:
            due, source = sla_due, f"applied_sla:{kind}"
            if sla_due < written_ms:
                sla_note = "already missed when the message arrived: due now"
    return Deadline(
        klass=klass,
        target_ms=target,
        due_ms=due,
        source=source,
        clock_start_ms=start,
        clock_note=note,
        sla_note=sla_note,
    )


def _clock_start(
    policy: DeadlinePolicy,
    facts: ConversationFacts,
    written_ms: float,
    offset: float,
    answered_ms: float,
) -> tuple[float, str]:
    """When the customer's wait began (Sluice's clock) and why that moment."""
    if not policy.from_waiting_since or facts.waiting_since_ms is None:
        return written_ms, "message"
    since = facts.waiting_since_ms + offset
    if since > written_ms + 1_000:  # a second of rounding: waiting_since is whole seconds
        return written_ms, "waiting_since ignored: after the message"
    if written_ms - since > policy.max_wait_s * 1000:
        return written_ms, f"waiting_since ignored: older than {policy.max_wait_s:g} s"
    if answered_ms and since < answered_ms:
        return written_ms, "waiting_since ignored: before Sluice's last answer"
    return min(since, written_ms), "waiting_since"


def _sla_due(
    facts: ConversationFacts,
    start: float,
    offset: float,
    answered_ms: float,
    clock_note: str,
    hours: Callable[[int], WorkingHours | None] | None,
) -> tuple[float | None, str, str]:
    """The SLA's deadline for this message (Sluice's clock), which threshold, and a note."""
    sla = facts.sla
    assert sla is not None
    first = facts.first_reply_ms is None and not answered_ms
    if first:
        # Chatwoot judges a next response only once first_reply_created_at is set
        # (Sla::EvaluateAppliedSlaService#check_nrt): before it, only the first threshold.
        if sla.first_response_s is None:
            return None, "", ""
        if sla.frt_due_ms is not None:
            return sla.frt_due_ms + offset, "first_response", "Chatwoot's sla_frt_due_at"
        begin = facts.created_ms + offset if facts.created_ms is not None else start
        due, note = _threshold(sla.business_hours_only, begin, sla.first_response_s, facts, hours)
        return due, "first_response", note
    if sla.next_response_s is None:
        return None, "", ""
    # Chatwoot counts sla_nrt_due_at from its waiting_since: stale (before Sluice's last
    # answer, see the module docstring) whether or not the clock switch is on.
    since = facts.waiting_since_ms
    stale = bool(answered_ms) and since is not None and since + offset < answered_ms
    if sla.nrt_due_ms is not None and not stale and clock_note in ("waiting_since", "message"):
        return sla.nrt_due_ms + offset, "next_response", "Chatwoot's sla_nrt_due_at"
    due, note = _threshold(sla.business_hours_only, start, sla.next_response_s, facts, hours)
    return due, "next_response", note + ("; Chatwoot's sla_nrt_due_at stale" if stale else "")


def _threshold(
    business_hours: bool,
    begin: float,
    threshold_s: float,
    facts: ConversationFacts,
    hours: Callable[[int], WorkingHours | None] | None,
) -> tuple[float, str]:
    if not business_hours:
        return begin + threshold_s * 1000, "threshold"
    known = hours(facts.inbox_id) if hours is not None and facts.inbox_id else None
    if known is None:
        return begin + threshold_s * 1000, "business hours unknown: counted as plain time"
    return known.deadline_ms(begin, threshold_s), "threshold in business hours"
