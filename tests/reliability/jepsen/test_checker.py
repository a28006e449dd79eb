"""The checker on hand-made histories: it must catch each kind of violation (and pass a
clean history), or a green Jepsen run would prove nothing.

Times: the run's events happen at T0 + a few seconds (epoch ms in stream ids, epoch seconds
in replies), so every case reads as a short timeline.
"""

from __future__ import annotations

from typing import Any

from .checker import CheckResult, check
from .model import (
    Event,
    FaultEvent,
    Incoming,
    JobFacts,
    Observation,
    Reply,
    SluiceRun,
    parse_run,
    parse_sluice_run,
)

T0 = 1_800_000_000.0  # epoch seconds
CONVERSATION = 7


def at(seconds: float, seq: int = 0) -> str:
    """A stream id ``seconds`` after T0."""
    return f"{int((T0 + seconds) * 1000)}-{seq}"


def run_of(job: int, token: str = "1", lease_until_s: float = 10.0) -> SluiceRun:
    return SluiceRun("host:1:a", ((str(job), token),), (T0 + lease_until_s) * 1000)


def reply(
    message_id: int, covers: tuple[int, int], received_s: float, run: SluiceRun | None = None
) -> Reply:
    return Reply(message_id, CONVERSATION, T0 + received_s, covers, run)


def answered_job(job: int, worker: str = "host:1:a", token: str = "1") -> list[Event]:
    """enqueued, reserved (running) and completed, a second apart."""
    return [
        Event(at(job), "enqueued", str(job), "7:7"),
        Event(at(job + 0.1), "reserved", str(job), "7:7", f"{worker}|{token}"),
        Event(at(job + 0.5), "completed", str(job), "7:7"),
    ]


def observed(replies: list[Reply], jobs: dict[str, JobFacts] | None = None) -> Observation:
    """Messages 101 and 102 accepted as jobs 1 and 2; ``replies`` in arrival order."""
    return Observation(
        incoming=[
            Incoming(101, CONVERSATION, True, "1"),
            Incoming(102, CONVERSATION, True, "2"),
        ],
        replies={CONVERSATION: replies},
        jobs=jobs or {"1": JobFacts("completed"), "2": JobFacts("completed")},
    )


def kinds(result: CheckResult) -> dict[str, int]:
    return dict(result.violation_kinds())


def clean_history() -> tuple[list[Event], Observation]:
    history = answered_job(1) + answered_job(2)
    replies = [reply(901, (1, 1), 1.4, run_of(1)), reply(902, (2, 2), 2.4, run_of(2))]
    return history, observed(replies)


def test_a_clean_history_passes_with_its_figures() -> None:
    history, obs = clean_history()
    faults = [FaultEvent("pause", "worker-0", T0, T0 + 3), FaultEvent("delay", "api", T0, T0)]
    result = check(history, obs, faults)
    assert result.ok, result.report("clean")
    assert (result.sent, result.accepted, result.replied, result.replies_posted) == (2, 2, 2, 2)
    assert result.faults == {"pause": 1, "delay": 1}
    assert result.events_recorded == 6 and result.fenced == 2 and result.unfenced == 0
    assert "faults=2 (delay=1, pause=1)" in result.line("clean")


def test_a_second_reply_for_a_message_is_a_duplicate() -> None:
    history, _ = clean_history()
    replies = [
        reply(901, (1, 1), 1.4, run_of(1)),
        reply(902, (1, 2), 2.4, run_of(2)),  # answers 1 again, with 2
    ]
    result = check(history, observed(replies), [FaultEvent("pause", "worker-2", T0, T0 + 2)])
    assert result.duplicates == 1 and result.replied == 1
    duplicate = next(v for v in result.violations if v.kind == "duplicate")
    assert duplicate.messages == (101,) and duplicate.jobs == ("1",)
    assert duplicate.conversation == CONVERSATION
    assert "(1, 1) at +0.00s, (1, 2) at +1.00s; faults near: pause:worker-2" in duplicate.detail
    assert kinds(result) == {"duplicate": 1, "order": 1}  # the customer saw 1 answered twice


def test_replies_out_of_order_are_caught() -> None:
    history, _ = clean_history()
    replies = [reply(902, (2, 2), 1.4, run_of(2)), reply(901, (1, 1), 2.4, run_of(1))]
    result = check(history, observed(replies))
    assert kinds(result) == {"order": 1}
    assert result.order_violations == 1 and result.replied == 2
    assert result.violations[0].messages == (902, 901)


def test_a_reply_stored_after_its_lease_ended_is_stale() -> None:
    history, _ = clean_history()
    late = reply(902, (2, 2), 11.0, run_of(2, lease_until_s=10.0))
    faults = [FaultEvent("pause", "worker-1", T0 + 7, T0 + 10.5)]
    result = check(history, observed([reply(901, (1, 1), 1.4, run_of(1)), late]), faults)
    assert kinds(result) == {"stale": 1} and result.stale == 1
    stale = result.violations[0]
    assert stale.messages == (902,) and stale.jobs == ("2",)
    assert "after the lease" in stale.detail and "pause:worker-1" in stale.detail


def test_a_reply_within_the_tolerance_is_not_stale() -> None:
    history, _ = clean_history()
    replies = [
        reply(901, (1, 1), 1.4, run_of(1)),
        reply(902, (2, 2), 10.2, run_of(2, lease_until_s=10.0)),  # 0.2 s < 0.25 s
    ]
    assert check(history, observed(replies)).ok


def test_a_reply_after_its_job_was_reserved_again_is_stale() -> None:
    """The lease it claims was still running, but someone else had the job by then."""
    history, _ = clean_history()
    history.append(Event(at(2.6), "recovered", "2", "7:7"))
    history.append(Event(at(2.7), "reserved", "2", "7:7", "host:2:b|2"))
    replies = [
        reply(901, (1, 1), 1.4, run_of(1)),
        reply(902, (2, 2), 3.5, run_of(2, token="1", lease_until_s=10.0)),
    ]
    result = check(history, observed(replies))
    assert kinds(result) == {"stale": 1}
    assert "reserved again by host:2:b (token 2" in result.violations[0].detail
    # The new owner's own reply, after its reservation, is not stale.
    own = [reply(901, (1, 1), 1.4, run_of(1)), reply(902, (2, 2), 3.5, run_of(2, token="2"))]
    assert check(history, observed(own)).ok


def test_a_dead_letter_that_never_ran_is_caught() -> None:
    """Reserved into prefetch buffers only (``|p``), never started: its attempts were used
    up by leases that expired in a buffer."""
    history = [
        *answered_job(1),
        Event(at(2), "enqueued", "2", "7:7"),
        Event(at(2.1), "reserved", "2", "7:7", "host:1:a|1|p"),
        Event(at(4.2), "recovered", "2", "7:7"),
        Event(at(4.3), "reserved", "2", "7:7", "host:2:b|2|p"),
        Event(at(6.4), "dead", "2", "7:7", "lease expired on the last attempt (2)"),
    ]
    jobs = {"1": JobFacts("completed"), "2": JobFacts("dead", "lease expired")}
    result = check(history, observed([reply(901, (1, 1), 1.4, run_of(1))], jobs))
    assert kinds(result) == {"dead_without_run": 1} and result.dead_without_run == 1
    assert result.violations[0].jobs == ("2",) and result.dead == 1 and result.prefetched == 2
    # Started once from the buffer, it did run: a fair dead letter.
    started = [*history[:-1], Event(at(4.4), "started", "2", "7:7", "host:2:b|2"), history[-1]]
    assert check(started, observed([reply(901, (1, 1), 1.4, run_of(1))], jobs)).ok
    # One event per script call lists every job it charged.
    listed = [*history[:-1], Event(at(4.4), "started", "", "", "host:2:b|5:1,2:2"), history[-1]]
    assert check(listed, observed([reply(901, (1, 1), 1.4, run_of(1))], jobs)).ok
    # The engine's old format (the worker id alone) counts as a run.
    old = [*answered_job(1), Event(at(2.1), "reserved", "2", "7:7", "host:1:a"), history[-1]]
    assert check(old, observed([reply(901, (1, 1), 1.4, run_of(1))], jobs)).ok


def test_a_dead_letter_needs_its_reason() -> None:
    history = [*answered_job(1), *answered_job(2)[:2], Event(at(3), "dead", "2", "7:7")]
    jobs = {"1": JobFacts("completed"), "2": JobFacts("dead", None)}
    result = check(history, observed([reply(901, (1, 1), 1.4, run_of(1))], jobs))
    assert kinds(result) == {"dead_without_reason": 1}


def test_unanswered_and_never_enqueued_messages_are_lost() -> None:
    history, _ = clean_history()
    obs = observed([reply(901, (1, 1), 1.4, run_of(1))], {"1": JobFacts("completed")})
    obs.incoming.append(Incoming(103, CONVERSATION, True, None))  # a 2xx without a job
    obs.incoming.append(Incoming(104, CONVERSATION, False, None))  # never accepted: not owed
    result = check(history, obs)
    assert result.lost == 2 and result.sent == 4 and result.accepted == 3
    lost = sorted(v.messages[0] for v in result.violations if v.kind == "lost")
    assert lost == [102, 103]


def test_handed_off_messages_are_counted_not_lost() -> None:
    history, _ = clean_history()
    jobs = {"1": JobFacts("completed"), "2": JobFacts("completed", handed_off=True)}
    result = check(history, observed([reply(901, (1, 1), 1.4, run_of(1))], jobs))
    assert result.ok and result.handed_off == 1 and result.replied == 1


def test_replies_without_sluice_run_are_unfenced() -> None:
    history, _ = clean_history()
    replies = [reply(901, (1, 1), 1.4), reply(902, (2, 2), 2.4)]
    expected = check(history, observed(replies))
    assert expected.unfenced == 2 and kinds(expected) == {"unfenced": 2}
    tolerated = check(history, observed(replies), expect_fencing=False)
    assert tolerated.ok and tolerated.unfenced == 2


def test_a_hole_in_the_history_is_a_violation() -> None:
    history, obs = clean_history()
    obs.history_gaps.append("entries trimmed")
    assert kinds(check(history, obs)) == {"history_gap": 1}


def test_reservation_infos_of_both_engine_formats() -> None:
    assert parse_run("vm:12:ab") == parse_run("vm:12:ab|")
    assert parse_run("vm:12:ab").token is None
    assert parse_run("vm:12:ab|3") == parse_run("vm:12:ab|3|")
    running, buffered = parse_run("vm:12:ab|3"), parse_run("vm:12:ab|3|p")
    assert (running.worker, running.token, running.prefetch) == ("vm:12:ab", "3", False)
    assert (buffered.token, buffered.prefetch) == ("3", True)


def test_replies_are_read_from_chatwoot_messages() -> None:
    run: dict[str, Any] = {"worker": "w", "token": 4, "jobs": [5, "6"], "lease_until_ms": 1e12}
    message = {
        "id": 77,
        "received_at": T0,
        "content_attributes": {"sluice_reply_id": "sluice-5-6", "sluice_run": run},
    }
    parsed = Reply.from_message(CONVERSATION, message)
    assert parsed.covers == (5, 6) and parsed.run == SluiceRun("w", (("5", "4"), ("6", "4")), 1e12)
    assert parsed.run.jobs == ("5", "6")
    broken = {**message, "content_attributes": {"sluice_reply_id": "x", "sluice_run": 3}}
    unreadable = Reply.from_message(CONVERSATION, broken)
    assert unreadable.covers is None and unreadable.run is None and unreadable.run_malformed
    assert parse_sluice_run({**run, "lease_until_ms": True}) is None
    assert parse_sluice_run({**run, "jobs": "5"}) is None
    assert parse_sluice_run(None) is None


def test_sluice_run_with_a_token_per_job() -> None:
    """Members of a batch are reserved with tokens of their own: as an object with
    ``tokens``, or as the flat string the pipeline stamps."""
    each = SluiceRun("vm:1:ab", (("5", "1"), ("6", "3")), 1e12)
    as_object = {"worker": "vm:1:ab", "jobs": [5, 6], "tokens": {"5": 1, "6": 3}}
    assert parse_sluice_run({**as_object, "lease_until_ms": 1e12}) == each
    flat = "worker=vm:1:ab;lease_until_ms=1000000000000.000;jobs=5:1,6:3"
    assert parse_sluice_run(flat) == each
    assert parse_sluice_run("worker=vm:1:ab;lease_until_ms=;jobs=5:1") is None  # no lease
    assert parse_sluice_run("worker=vm:1:ab;lease_until_ms=1;jobs=5") is None  # no token
    assert parse_sluice_run("worker=vm:1:ab;jobs=5:1") is None


def test_a_batch_member_reserved_again_makes_the_reply_stale() -> None:
    """The turn answered jobs 1 and 2 (tokens 1 and 3); job 2 was recovered and reserved
    again (token 4) before the reply landed."""
    history = [
        *answered_job(1)[:2],
        Event(at(1.1, 1), "reserved", "2", "7:7", "host:1:a|3"),
        Event(at(3.5), "recovered", "2", "7:7"),
        Event(at(3.6), "reserved", "2", "7:7", "host:2:b|4"),
    ]
    run = SluiceRun("host:1:a", (("1", "1"), ("2", "3")), (T0 + 10) * 1000)
    result = check(history, observed([reply(901, (1, 2), 4.0, run)]))
    assert kinds(result) == {"stale": 1}
    assert "job 2 (token 3) was reserved again by host:2:b (token 4" in result.violations[0].detail


def test_a_malformed_sluice_run_is_reported_even_without_fencing_expected() -> None:
    history, _ = clean_history()
    bad = Reply(902, CONVERSATION, T0 + 2.4, (2, 2), None, run_malformed=True)
    obs = observed([reply(901, (1, 1), 1.4, run_of(1)), bad])
    result = check(history, obs, expect_fencing=False)
    assert kinds(result) == {"unfenced": 1}
    assert "malformed" in result.violations[0].detail
