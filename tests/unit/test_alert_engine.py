"""The alert lifecycle with an injected clock: no Redis, no sleeping, hours in milliseconds."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.alerts import AlertEngine, Notification, fingerprint
from sluice.alerts.config import AlertSettings, load_alert_settings
from sluice.alerts.rules import default_rules, severity_rank
from sluice.monitor import signals as sig

QUEUE = "inbound"
WAIT = "queue_wait_high"
STEP = 5.0  # the default evaluation interval


def make_settings(**env: str) -> AlertSettings:
    return load_alert_settings({f"SLUICE_ALERT_{k.upper()}": v for k, v in env.items()})


@dataclass
class Driver:
    """An engine plus a clock; ``run`` feeds one value at every evaluation for a while."""

    engine: AlertEngine
    now: float = 1_000_000.0
    sent: list[tuple[float, Notification]] = field(default_factory=list)

    @classmethod
    def create(cls, **env: str) -> Driver:
        s = make_settings(**env)
        return cls(AlertEngine(default_rules(s), s, QUEUE))

    def run(self, wait_ms: float | None, seconds: float, step: float = STEP) -> list[Notification]:
        """Queue wait ``wait_ms`` at every evaluation for ``seconds``."""
        out: list[Notification] = []
        end = self.now + seconds
        while self.now < end:
            notes = self.engine.evaluate({sig.QUEUE_WAIT_P95_MS_1M: wait_ms}, self.now)
            self.sent += [(self.now, n) for n in notes]
            out += notes
            self.now += step
        return out

    def kinds(self, notes: list[Notification] | None = None) -> list[tuple[str, str | None]]:
        chosen = notes if notes is not None else [n for _, n in self.sent]
        return [(n.kind, n.alert.severity) for n in chosen]

    def wait_alert(self) -> tuple[str, str | None]:
        snap = self.engine.get(WAIT)
        return snap.status, snap.severity


def test_pending_then_firing_after_for_s() -> None:
    d = Driver.create()
    assert d.run(6_000, 30) == []  # t = 0 .. 25 s: held less than 30 s
    assert d.wait_alert() == ("pending", "warning")
    notes = d.run(6_000, STEP)  # t = 30 s
    assert d.kinds(notes) == [("firing", "warning")]
    snap = notes[0].alert
    assert snap.started_at == d.now - 35  # the episode started at the first evaluation
    assert snap.threshold == 5_000 and snap.value == 6_000
    assert snap.labels == {"alertname": WAIT, "queue": QUEUE, "severity": "warning"}
    assert snap.fingerprint == fingerprint(WAIT, QUEUE)
    events = [h.event for h in d.engine.take_history()]
    assert events == ["pending", "firing"]


def test_short_excursion_never_fires() -> None:
    d = Driver.create()
    assert d.run(6_000, 25) == []
    assert d.run(4_000, 60) == []
    assert d.wait_alert()[0] == "inactive"
    assert [h.event for h in d.engine.take_history()] == ["pending", "pending_cancelled"]


def test_for_zero_fires_at_once() -> None:
    d = Driver.create(for_s="0")
    assert d.kinds(d.run(6_000, STEP)) == [("firing", "warning")]


def test_resolve_needs_the_hysteresis_band_for_for_s() -> None:
    d = Driver.create()
    d.run(6_000, 60)
    # Under the threshold but not 10 % under: stays firing, however long.
    assert d.run(4_800, 3_600) == []
    assert d.wait_alert() == ("firing", "warning")
    # Inside the band, but for less than for_s.
    d.run(4_400, 25)
    d.run(4_800, 10)
    assert d.wait_alert()[0] == "firing"
    d.run(4_400, 35)
    assert d.wait_alert()[0] == "resolved"
    resolved_at = d.engine.get(WAIT).ended_at
    assert resolved_at is not None


def test_resolved_is_sent_after_the_cooldown_with_the_real_end_time() -> None:
    d = Driver.create()
    d.run(6_000, 60)
    notes = d.run(4_000, 35)
    assert notes == []  # resolved, but held for the cooldown
    resolved_at = d.engine.get(WAIT).ended_at
    notes = d.run(4_000, 300)
    assert d.kinds(notes) == [("resolved", "warning")]
    assert notes[0].alert.ended_at == resolved_at
    assert notes[0].alert.status == "resolved"
    assert d.run(4_000, 3_600) == []


def test_comeback_within_the_cooldown_is_the_same_episode_without_notifications() -> None:
    d = Driver.create()
    first = d.run(6_000, 35)
    assert d.kinds(first) == [("firing", "warning")]
    started = first[0].alert.started_at
    for _ in range(10):  # slow flapping: 40 s calm (resolves), 20 s bad
        d.run(4_000, 40)
        assert d.wait_alert()[0] == "resolved"
        d.run(6_000, 20)
        assert d.wait_alert()[0] == "firing"  # straight back, no pending time
    assert d.engine.get(WAIT).started_at == started
    assert d.kinds() == [("firing", "warning")]
    d.run(4_000, 400)
    assert d.kinds() == [("firing", "warning"), ("resolved", "warning")]
    history = [h.event for h in d.engine.take_history()]
    assert history.count("refiring") == 10


def test_cooldown_zero_sends_resolved_at_once_and_a_comeback_is_a_new_episode() -> None:
    d = Driver.create(cooldown_s="0")
    d.run(6_000, 35)
    assert d.kinds(d.run(4_000, 35)) == [("resolved", "warning")]
    assert d.run(6_000, 25) == []  # pending again
    assert d.kinds(d.run(6_000, 10)) == [("firing", "warning")]


@pytest.mark.parametrize("for_s", ["0", "30"])
def test_flapping_input_does_not_flap_alerts(for_s: str) -> None:
    d = Driver.create(for_s=for_s)
    for _ in range(720):  # one hour, alternating above / below at every evaluation
        d.run(6_000, STEP)
        d.run(4_000, STEP)
    kinds = d.kinds()
    assert [k for k, _ in kinds].count("firing") <= 1
    assert len(kinds) <= 2  # a firing, perhaps a repeat... never a storm
    if for_s == "30":
        assert kinds == []  # never held for 30 s


def test_flapping_while_firing_neither_resolves_nor_renotifies() -> None:
    d = Driver.create()
    d.run(6_000, 35)
    for _ in range(300):
        d.run(4_000, STEP)
        d.run(6_000, STEP)
    assert d.kinds() == [("firing", "warning")]
    assert d.wait_alert()[0] == "firing"


def test_escalation_and_deescalation_notify_once_each() -> None:
    d = Driver.create()
    d.run(6_000, 35)
    d.run(12_000, 25)
    assert d.wait_alert() == ("firing", "warning")  # critical not yet held for 30 s
    assert d.kinds(d.run(12_000, 10)) == [("escalated", "critical")]
    # Hovering just under critical (inside the threshold, not the band) keeps it critical.
    assert d.run(9_500, 600) == []
    assert d.kinds(d.run(8_000, 35)) == [("deescalated", "warning")]
    assert d.run(8_000, 600) == []
    assert d.kinds() == [
        ("firing", "warning"),
        ("escalated", "critical"),
        ("deescalated", "warning"),
    ]


def test_flapping_critical_does_not_escalate() -> None:
    d = Driver.create()
    d.run(6_000, 35)
    for _ in range(200):
        d.run(12_000, STEP)
        d.run(7_000, STEP)
    assert d.kinds() == [("firing", "warning")]


def test_critical_suppresses_warning_of_the_same_rule() -> None:
    d = Driver.create()
    notes = d.run(12_000, 35)
    assert d.kinds(notes) == [("firing", "critical")]  # no warning first
    active = d.engine.active()
    assert [(a.rule, a.severity) for a in active] == [(WAIT, "critical")]
    assert active[0].threshold == 10_000
    d.run(12_000, 600)
    assert len(d.engine.active()) == 1


def test_repeat_interval_while_firing() -> None:
    d = Driver.create()
    d.run(6_000, 35)
    notes = d.run(6_000, 9 * 3600, step=60)
    assert d.kinds(notes) == [("repeat", "warning"), ("repeat", "warning")]
    first = next(t for t, n in d.sent if n.kind == "firing")
    repeats = [t for t, n in d.sent if n.kind == "repeat"]
    assert repeats[0] - first >= 4 * 3600
    assert repeats[0] - first < 4 * 3600 + 60


def test_ack_stops_repeats_until_escalation() -> None:
    d = Driver.create()
    d.run(6_000, 35)
    fp = fingerprint(WAIT, QUEUE)
    assert d.engine.ack(fp, "alice", d.now)
    assert d.engine.get(WAIT).acked_by == "alice"
    assert d.run(6_000, 9 * 3600, step=60) == []
    # A new severity is new information: it is announced and needs a new ack.
    assert d.kinds(d.run(12_000, 35)) == [("escalated", "critical")]
    assert d.engine.get(WAIT).acked_by is None
    assert d.kinds(d.run(12_000, 5 * 3600, step=60)) == [("repeat", "critical")]
    assert [h.by for h in d.engine.take_history() if h.event == "acknowledged"] == ["alice"]


def test_ack_of_an_inactive_alert_is_refused() -> None:
    d = Driver.create()
    assert d.engine.ack(WAIT, "alice", d.now) is False
    with pytest.raises(KeyError):
        d.engine.ack("no-such-alert", "alice", d.now)


def test_ack_ends_with_the_episode() -> None:
    d = Driver.create(cooldown_s="0")
    d.run(6_000, 35)
    d.engine.ack(WAIT, "alice", d.now)
    d.run(4_000, 35)  # resolved
    d.run(6_000, 35)  # a new episode
    assert d.engine.get(WAIT).acked_by is None


def test_silence_suppresses_notifications_until_it_ends() -> None:
    d = Driver.create()
    fp = d.engine.silence(WAIT, d.now + 600, "bob", d.now)
    assert fp == fingerprint(WAIT, QUEUE)
    assert d.run(6_000, 300) == []
    assert d.wait_alert() == ("firing", "warning")  # the lifecycle went on
    assert d.engine.get(WAIT).silenced_until is not None
    notes = d.run(6_000, 600)
    assert d.kinds(notes) == [("firing", "warning")]  # caught up once, when it ended
    events = [h.event for h in d.engine.take_history()]
    assert events[0] == "silenced" and "silence_expired" in events


def test_alert_that_fires_and_resolves_inside_a_silence_is_never_announced() -> None:
    d = Driver.create()
    d.engine.silence(WAIT, d.now + 3_600, "bob", d.now)
    d.run(6_000, 120)
    d.run(4_000, 600)
    assert d.wait_alert()[0] == "resolved"
    d.run(4_000, 3_600)
    assert d.kinds() == []


def test_resolution_during_a_silence_is_announced_when_it_ends() -> None:
    d = Driver.create()
    d.run(6_000, 35)
    d.engine.silence(WAIT, d.now + 3_600, "bob", d.now)
    d.run(4_000, 600)
    assert d.kinds() == [("firing", "warning")]
    d.run(4_000, 3_600)
    assert d.kinds() == [("firing", "warning"), ("resolved", "warning")]


def test_unsilence_brings_receivers_up_to_date() -> None:
    d = Driver.create()
    d.engine.silence(fingerprint(WAIT, QUEUE), d.now + 86_400, "bob", d.now)
    d.run(12_000, 120)
    assert d.engine.unsilence(WAIT, "bob", d.now) is True
    assert d.kinds(d.run(12_000, STEP)) == [("firing", "critical")]
    assert d.engine.unsilence(WAIT, "bob", d.now) is False
    with pytest.raises(ValueError):
        d.engine.silence(WAIT, d.now - 1, "bob", d.now)


def test_min_samples_gate_in_the_engine() -> None:
    s = make_settings(for_s="0")
    engine = AlertEngine(default_rules(s), s, QUEUE)
    few = {sig.FAILURE_RATE_5M: 0.9, sig.FINISHED_5M: 5.0}
    assert engine.evaluate(few, 0.0) == []
    assert engine.get("failure_rate_high").status == "inactive"
    notes = engine.evaluate({sig.FAILURE_RATE_5M: 0.9, sig.FINISHED_5M: 50.0}, 5.0)
    assert [(n.alert.rule, n.kind) for n in notes] == [("failure_rate_high", "firing")]


def test_burn_rate_alert_needs_both_windows() -> None:
    s = make_settings(for_s="0")
    engine = AlertEngine(default_rules(s), s, QUEUE)
    one_window = {sig.BURN_RATE_1H: 20.0, sig.BURN_RATE_5M: 3.0, sig.SLA_SAMPLES_5M: 100.0}
    assert engine.evaluate(one_window, 0.0) == []
    both = {**one_window, sig.BURN_RATE_5M: 16.0}
    notes = engine.evaluate(both, 5.0)
    assert [(n.alert.rule, n.kind, n.alert.severity) for n in notes] == [
        ("sla_burn_rate_fast", "firing", "critical")
    ]
    assert notes[0].alert.value == 16.0  # the smaller window


def test_state_json_round_trip_continues_the_lifecycle() -> None:
    d = Driver.create()
    d.run(6_000, 20)  # pending since 20 s
    d.engine.silence("worker_utilization_high", d.now + 60, "bob", d.now)
    text = d.engine.state_to_json()
    s = d.engine.settings
    restored = AlertEngine.from_json(text, default_rules(s), s, QUEUE)
    assert restored.state_to_json() == text
    assert restored.alerts() == d.engine.alerts()
    d2 = Driver(restored, now=d.now)
    assert d2.kinds(d2.run(6_000, 15)) == [("firing", "warning")]  # at 30 s, not 50 s
    with pytest.raises(ValueError, match="queue"):
        AlertEngine(default_rules(s), s, "other").restore(text)


def test_restore_drops_unknown_rules_and_starts_new_ones_inactive() -> None:
    d = Driver.create(for_s="0")
    d.run(12_000, STEP)
    s = d.engine.settings
    only_wait = [r for r in default_rules(s) if r.name == WAIT]
    small = AlertEngine.from_json(d.engine.state_to_json(), only_wait, s, QUEUE)
    assert [a.rule for a in small.alerts()] == [WAIT]
    assert small.get(WAIT).status == "firing"
    back = AlertEngine.from_json(small.state_to_json(), default_rules(s), s, QUEUE)
    assert back.get("worker_utilization_high").status == "inactive"


def test_fingerprint_depends_on_rule_and_queue_only() -> None:
    assert fingerprint(WAIT, "a") == fingerprint(WAIT, "a")
    assert fingerprint(WAIT, "a") != fingerprint(WAIT, "b")
    assert fingerprint(WAIT, "a") != fingerprint("other", "a")
    assert len(fingerprint(WAIT, "a")) == 16


# -- property: receivers always hear a consistent story ------------------------------------

values = st.one_of(
    st.none(),
    st.sampled_from([0.0, 4_400.0, 4_800.0, 5_500.0, 9_500.0, 8_000.0, 12_000.0]),
    st.floats(min_value=0, max_value=20_000, allow_nan=False),
)
actions = st.tuples(
    st.floats(min_value=0.5, max_value=400),  # seconds to the next evaluation
    values,
    st.sampled_from(["none"] * 6 + ["ack", "silence", "unsilence", "restore"]),
    st.floats(min_value=1, max_value=2_000),  # silence length
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    for_s=st.sampled_from(["0", "10", "30"]),
    cooldown=st.sampled_from(["0", "60", "300"]),
    repeat=st.sampled_from(["60", "3600"]),
    steps=st.lists(actions, min_size=1, max_size=120),
)
def test_notifications_always_alternate(
    for_s: str, cooldown: str, repeat: str, steps: list[tuple[float, float | None, str, float]]
) -> None:
    s = make_settings(for_s=for_s, cooldown_s=cooldown, repeat_interval_s=repeat)
    rules = default_rules(s)
    engine = AlertEngine(rules, s, QUEUE)
    told: dict[str, str | None] = {}
    silenced_until: dict[str, float] = {}
    now = 0.0
    for dt, value, action, silence_for in steps:
        now += dt
        if action == "ack":
            engine.ack(WAIT, "a", now)
        elif action == "silence":
            engine.silence(WAIT, now + silence_for, "a", now)
            silenced_until[fingerprint(WAIT, QUEUE)] = now + silence_for
        elif action == "unsilence":
            engine.unsilence(WAIT, "a", now)
            silenced_until.pop(fingerprint(WAIT, QUEUE), None)
        elif action == "restore":
            engine = AlertEngine.from_json(engine.state_to_json(), rules, s, QUEUE)
        notes = engine.evaluate({sig.QUEUE_WAIT_P95_MS_1M: value}, now)
        for note in notes:
            fp = note.alert.fingerprint
            assert now >= silenced_until.get(fp, 0.0), "notified during a silence"
            previous = told.get(fp)
            severity = note.alert.severity
            assert severity is not None
            if note.kind == "firing":
                assert previous is None, "two firing without a resolved between"
                told[fp] = severity
            elif note.kind == "resolved":
                assert previous is not None, "resolved without a firing"
                assert severity == previous
                told[fp] = None
            else:
                assert previous is not None, f"{note.kind} of an alert not firing"
                if note.kind == "escalated":
                    assert severity_rank(severity) > severity_rank(previous)  # type: ignore[arg-type]
                elif note.kind == "deescalated":
                    assert severity_rank(severity) < severity_rank(previous)  # type: ignore[arg-type]
                else:
                    assert severity == previous
                told[fp] = severity
        # One alert per rule: a rule is never warning and critical at once.
        assert len({a.rule for a in engine.active()}) == len(engine.active())
