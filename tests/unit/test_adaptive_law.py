"""The adaptive concurrency law on recorded inputs: deterministic, no Redis, no clock.

Each test feeds :func:`sluice.control.law.decide` a sequence of observations one second
apart, as the controller would, and checks the targets it chose and why."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.control.law import Decision, LawConfig, LawState, Observation, decide, staffing
from sluice.control.share import share_of

CFG = LawConfig(min_per_worker=1, max_per_worker=50, budget_ms=10_000, cooldown_s=5.0)


def obs(at: float, **kw: object) -> Observation:
    base: dict[str, object] = {
        "workers": 2,
        "wait_ms": 0.0,
        "backlog": 0,
        "arrival_per_s": 20.0,
        "calls": 20,
        "latency_ms": 200.0,
        "utilization": 0.4,
    }
    base.update(kw)
    return Observation(at_s=at, **base)  # type: ignore[arg-type]


def run(
    state: LawState, observations: Iterable[Observation], cfg: LawConfig = CFG
) -> list[Decision]:
    decisions = []
    for o in observations:
        d = decide(state, o, cfg)
        state = d.state
        decisions.append(d)
    return decisions


def targets(decisions: list[Decision]) -> list[int]:
    return [d.target for d in decisions]


def test_staffing_rule() -> None:
    assert staffing(0) == 0
    assert staffing(4) == 8  # 4 + 2·2
    assert staffing(40) == 53  # 40 + 2·6.32, rounded up


def test_queue_wait_and_slow_broker_increase_the_target() -> None:
    """Latency steps 200 ms → 2 s at 20 msg/s: the slots fill, the oldest wait grows, the
    target climbs towards the Little's-law demand (20/s × 2 s = 40 busy slots)."""
    warm = [obs(t) for t in range(10)]
    step = [
        obs(10 + t, latency_ms=2000.0, utilization=1.0, wait_ms=1000.0 * t, backlog=15 * t)
        for t in range(1, 30)
    ]
    decisions = run(LawState(target=10), [*warm, *step])
    ups = [d for d in decisions if d.kind == "up"]
    assert ups, [d.reason for d in decisions]
    assert decisions[-1].target >= 40
    assert "vs baseline" in ups[0].reason and "→" in ups[0].reason


def test_429s_back_off_multiplicatively_and_set_the_cap() -> None:
    state = LawState(target=20, changed_at=-100.0, last_at=0.0)
    decisions = run(state, [obs(t, calls=20, errors=5, throttled=5) for t in range(1, 4)])
    down = [d for d in decisions if d.kind == "down"]
    assert down[0].target == 15  # 20 × 0.75
    assert down[0].state.cap == 15
    assert "429s" in down[0].reason


def test_errors_back_off_too() -> None:
    state = LawState(target=20, changed_at=-100.0, last_at=0.0)
    d = run(state, [obs(1, calls=20, errors=4)])[-1]
    assert d.target == 15 and "errors 20%" in d.reason


def test_few_calls_are_not_believed() -> None:
    """Two 429s out of three calls are noise, not a trend (min_calls)."""
    state = LawState(target=20, changed_at=-100.0, last_at=0.0)
    d = run(state, [obs(1, calls=3, errors=2, throttled=2, utilization=0.6)])[-1]
    assert d.kind == "hold", d.reason


def test_latency_rise_from_own_load_is_undone_by_the_gradient_check() -> None:
    """An increase under pressure that leaves the completion rate flat while latency rises
    goes back: the broker is saturated (throughput = slots / latency stays put)."""
    state = LawState(target=10, changed_at=-100.0, last_at=-1.0)
    before = [obs(t, calls=10, latency_ms=1000.0, wait_ms=6000.0, backlog=50) for t in range(3)]
    decisions = run(state, before)
    assert decisions[-1].target > 10
    raised = decisions[-1].target
    after = [
        obs(3 + t, calls=10, latency_ms=1000.0 * raised / 10, wait_ms=6000.0, backlog=50)
        for t in range(1, 8)
    ]
    decisions = run(decisions[-1].state, after)
    down = [d for d in decisions if d.kind == "down"]
    assert down and down[0].target == 10, [d.reason for d in decisions]
    assert all(d.target <= 10 for d in decisions[decisions.index(down[0]) :])
    assert "saturated" in down[0].reason
    assert down[0].state.cap == 10


def test_bounds_per_live_worker() -> None:
    cfg = LawConfig(min_per_worker=2, max_per_worker=5, cooldown_s=5.0)
    high = run(LawState(target=30), [obs(0, workers=3)], cfg)[-1]
    assert high.target == 15 and "ceiling (max 5/worker × 3)" in high.reason
    low = run(LawState(target=1), [obs(0, workers=3)], cfg)[-1]
    assert low.target == 6 and "floor" in low.reason
    # Pressure never pushes past the maximum.
    pressed = run(
        LawState(target=15, changed_at=-100.0),
        [obs(t, workers=3, wait_ms=9000.0, backlog=500, utilization=1.0) for t in range(20)],
        cfg,
    )
    assert max(targets(pressed)) == 15


def test_rate_limit_is_a_hard_ceiling_by_littles_law() -> None:
    """30 jobs/s × 0.5 s = 15 busy slots at most (+20 %): more could only wait."""
    d = run(
        LawState(target=40),
        [obs(0, rate_limit=30, latency_ms=500.0, wait_ms=9000.0, backlog=100)],
    )[-1]
    assert d.target == 18 and "rate limit 30/s" in d.reason


def test_redis_pool_is_a_hard_ceiling() -> None:
    d = run(LawState(target=60), [obs(0, pool_per_worker=20)])[-1]
    assert d.target == 36 and "Redis pool" in d.reason  # 2 workers × (20 − 2)


def test_cooldown_between_changes() -> None:
    """Under constant pressure the target changes at most once per cooldown."""
    seq = [obs(t, wait_ms=8000.0, backlog=200, utilization=1.0) for t in range(30)]
    decisions = run(LawState(target=4), seq)
    times = [o.at_s for o, d in zip(seq, decisions, strict=True) if d.changed]
    assert len(times) >= 3
    assert all(b - a >= CFG.cooldown_s for a, b in itertools.pairwise(times))


def test_shrinks_when_calm_and_idle_but_not_below_the_demand() -> None:
    seq = [obs(t, arrival_per_s=5.0, utilization=0.1) for t in range(120)]
    decisions = run(LawState(target=40, changed_at=-100.0), seq)
    final = decisions[-1].target
    assert final == staffing(5.0 * 0.2 * 1.5) == 4  # 1.5 busy slots + 2·√1.5
    assert all(d.kind in ("down", "hold") for d in decisions)


def test_no_latency_yet_means_no_guess() -> None:
    d = run(LawState(target=10, changed_at=-100.0), [obs(0, calls=0, latency_ms=None)])[-1]
    assert d.kind == "hold"


@settings(max_examples=80, deadline=None)
@given(
    rate=st.floats(2.0, 40.0),
    latency=st.floats(50.0, 2000.0),
    seed=st.integers(0, 2**32),
    start=st.integers(1, 100),
)
def test_no_oscillation_on_a_noisy_steady_input(
    rate: float, latency: float, seed: int, start: int
) -> None:
    """A steady load measured with ±20 % noise (latency, arrivals, utilization): the target
    settles; it never flaps up and down (at most one reversal of direction in 300 s; after
    the first 100 s at most two more steps, the same way: the end of a slow start from far
    below, or where the one-slot deadband of a tiny target meets the noise)."""
    noise = random.Random(seed)
    state = LawState(target=start, changed_at=-100.0)
    target = start
    decisions = []
    for t in range(300):
        n = noise.uniform(-0.2, 0.2)
        load = rate * latency / 1000 * (1 + n)
        o = obs(
            t,
            arrival_per_s=rate * (1 + n),
            latency_ms=latency * (1 + noise.uniform(-0.2, 0.2)),
            calls=max(1, round(rate)),
            utilization=min(1.0, load / target),
            wait_ms=0.0,
        )
        d = decide(state, o, CFG)
        state, target = d.state, d.target
        decisions.append(d)
    kinds = [d.kind for d in decisions if d.changed]
    reversals = sum(1 for a, b in itertools.pairwise(kinds) if a != b)
    assert reversals <= 1, [d.reason for d in decisions if d.changed]
    late = [d.kind for d in decisions[100:] if d.changed]
    assert len(late) <= 2 and len(set(late)) <= 1, (rate, latency, start, late)


def test_share_of_spreads_the_remainder_by_id_and_never_gives_zero() -> None:
    ids = ["w-b", "w-a", "w-c"]
    assert [share_of(10, ids, me) for me in sorted(ids)] == [4, 3, 3]
    assert sum(share_of(10, ids, me) for me in ids) == 10
    assert share_of(2, ids, "w-c") == 1  # never below one slot
    assert share_of(5, [], "alone") == 5  # the worker counts itself


def test_a_congestion_decrease_that_completed_more_is_followed_by_another() -> None:
    """Past its knee a broker completes more with fewer requests in flight: after a back-off
    on 429s raised the completion rate, the law steps down again (and caps there)."""
    state = LawState(target=20, changed_at=-100.0, last_at=0.0)
    throttled = [obs(1, calls=20, errors=8, throttled=8, backlog=200)]
    decisions = run(state, throttled)
    assert decisions[-1].target == 15
    # At 15 slots: no 429s, and 14 completions/s where 20 slots managed 12.
    better = [obs(1 + t, calls=14, backlog=200, wait_ms=1000.0) for t in range(1, 7)]
    decisions = run(decisions[-1].state, better)
    down = [d for d in decisions if d.changed]
    assert down and down[0].target == 11 and "fewer do more" in down[0].reason
    assert down[0].state.cap == 11


def test_after_the_cap_is_forgotten_the_law_probes_one_step_at_a_time() -> None:
    """A minute after 429s set a cap of 4, pressure may raise the target again, but past
    the old cap one deadband step per decision (TCP's congestion avoidance), not to the
    demand at once."""
    state = LawState(target=4, cap=4, cap_at=0.0, changed_at=0.0, last_at=0.0)
    pressed = [obs(t, wait_ms=8000.0, backlog=300, utilization=1.0) for t in range(1, 90)]
    decisions = run(state, pressed)
    ups = [d for d in decisions if d.changed]
    assert not any(d.changed for d in decisions[:59])  # capped for the first minute
    assert [d.target for d in ups[:3]] == [5, 6, 7], [d.reason for d in ups]


def test_a_clock_stepped_back_does_not_freeze_the_law() -> None:
    """The saved state's times come from the Redis server's clock; after it is stepped back
    an hour (a failover to a replica behind, an NTP step) they lie in the future. The law
    brings them back to now: 429s are backed off within a cool-down, not after an hour."""
    state = LawState(target=20, changed_at=3_500.0, last_at=3_600.0, cap_at=3_400.0, cap=30)
    decisions = run(state, [obs(t, calls=20, errors=5, throttled=5) for t in range(1, 13)])
    down = [d for d in decisions if d.kind == "down"]
    assert down and down[0].target == 15 and "429s" in down[0].reason
    assert all(d.state.last_at is not None and d.state.last_at <= 12 for d in decisions)
