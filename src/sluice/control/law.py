"""The control law of adaptive concurrency: from what was measured, the queue's next global
slot count. A pure function of its inputs (:func:`decide`), so it is tested on recorded
inputs, without Redis or a clock (tests/unit/test_adaptive_law.py).

The law is AIMD with a Little's-law demand estimate, in the manner of Netflix's
concurrency-limits library (github.com/Netflix/concurrency-limits: ``AIMDLimit``,
``Gradient2Limit``) and of TCP congestion control (RFC 5681: multiplicative decrease on
loss, a slow-start threshold remembered where loss happened).
Where a TCP sender or concurrency-limits guess the right window from round-trip times
alone, a queue knows more: how long messages wait against their SLA budget, how fast they
arrive, and whether the broker says "too many requests". Each decision, in this order:

1. **Ceiling** (hard, at once): the global bounds (``WORKER_CONCURRENCY_MIN``/``_MAX`` per
   live worker), the rate limit by Little's law (``rate limit × broker latency``, + 20 %:
   slots beyond it could only wait for the limiter) and the Redis pools (a slot needs a
   connection now and then; the pool's size per worker, less two for the heartbeat and the
   fetch loop). A target outside the bounds moves into them at once; one above a ceiling
   that follows the latency (the rate limit's) drops to it once per cooldown.
2. **Back off** (multiplicative decrease): 429s at or above ``throttle_ratio`` of the
   calls since the last change, or other errors at or above ``error_ratio``: the target
   becomes ``target × backoff`` and that level the *cap*: no increase goes above it until
   ``forget_after_s`` (a minute) passes without congestion; then increases past it go one
   deadband step per decision until twice the old cap (TCP's ``ssthresh`` and congestion
   avoidance: a broker that refused once is probed again gently).
3. **Gradient** (hill climbing on the completion rate): while enough work waits to keep
   every slot busy, what the slots buy is completions per second (Little's law:
   slots / latency), so the rate after the last change is compared with the rate before
   it. An increase under pressure that did not raise it (by ``gain``, 5 %) while the
   broker's latency rose is undone: the broker is saturated, more concurrency only makes
   every call slower (Gradient2's reading of a latency rise, checked rather than
   assumed). A decrease made for congestion that raised it is followed by another (the
   broker was past its knee: fewer slots complete more); one that lowered it is undone.
   Each such move sets the cap.
4. **Increase**: when the oldest message that could start has waited ``pressure`` (50 %) of
   the SLA budget or more, or the slots are at least 85 % utilized and the demand exceeds
   them, the target moves to the demand, by at least ``deadband`` and at most doubling per
   decision (slow start). The demand is the square-root staffing rule of queueing theory
   (Halfin-Whitt): ``R + 2·√R`` slots for an offered load of ``R = (arrival rate + backlog
   / half the budget) × broker latency`` (Little's law), i.e. enough to serve the arrivals
   and drain the backlog within half the budget, with headroom for Poisson bursts.
5. **Decrease**: when nothing waits (under ``calm``, 10 % of the budget) and utilization is
   under 50 %, the target shrinks toward the demand of a 50 % higher load
   (``shrink_margin``), by at most a quarter per decision. The gap between the two rules
   is the hysteresis: a steady load measured with ±20 % noise moves the target once and
   leaves it there (the property test of tests/unit/test_adaptive_law.py).

Stability: a change needs the ``cooldown`` since the previous one (measurements after a
change describe the new level only once it has run a while), a reversal of direction twice
the cooldown (except a back-off: a broker refusing must never wait), and any change other
than a back-off or a pressure increase must move the target by more than the deadband
(10 %, at least one slot): noise around a steady state changes nothing. The broker latency
and the arrival rate are smoothed by a short EWMA (``short_tau_s``) the law acts on; the
latency also by a long one, the *baseline* (``baseline_tau_s``, Gradient2's long window),
that the reasons quote so an operator sees "latency 2.1 s vs baseline 0.2 s". The counts
of a new level (calls, errors, 429s, completions) start one broker latency plus
``settle_s`` after the change: calls started at the old level end later, and workers
report their calls once a heartbeat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["Decision", "LawConfig", "LawState", "Observation", "decide", "staffing"]


@dataclass(frozen=True, slots=True)
class LawConfig:
    """The law's constants. Bounds are per live worker (the unit of WORKER_CONCURRENCY)."""

    min_per_worker: int = 1
    max_per_worker: int = 50
    budget_ms: float = 10_000.0  # the SLA warning threshold: what a wait is measured against
    cooldown_s: float = 5.0
    pressure: float = 0.5  # oldest wait / budget at or above which slots are added
    calm: float = 0.1  # oldest wait / budget under which slots may be removed
    busy: float = 0.85  # utilization at or above which demand above the target adds slots
    idle: float = 0.5  # utilization under which slots may be removed
    backoff: float = 0.75  # multiplicative decrease on 429s / errors
    throttle_ratio: float = 0.02  # share of calls answered 429 that means "back off"
    error_ratio: float = 0.10  # share of calls failing otherwise that means "back off"
    min_calls: int = 10  # calls since the last change before ratios are believed
    deadband: float = 0.10
    shrink_margin: float = 1.5  # shrink only to the demand of 1.5 × the measured load
    short_tau_s: float = 3.0
    baseline_tau_s: float = 300.0
    rate_headroom: float = 1.2  # the rate-limit ceiling's margin over rate × latency
    pool_reserved: int = 2  # connections per worker the heartbeat and fetch loop keep
    forget_after_s: float = 60.0  # a cap without congestion since is forgotten
    gain: float = 0.05  # a completion-rate change smaller than this is no change
    settle_s: float = 2.0  # + one latency: calls of the old level still being reported


@dataclass(frozen=True, slots=True)
class Observation:
    """One reading of the queue, the broker and the workers, at ``at_s`` (seconds, any
    monotonic origin). Broker counts are those since the previous observation."""

    at_s: float
    workers: int  # live workers
    wait_ms: float  # age of the oldest message that could start now (0: none)
    backlog: int  # messages waiting
    arrival_per_s: float
    calls: int = 0
    errors: int = 0  # failed calls, throttled ones included
    throttled: int = 0
    latency_ms: float | None = None  # mean latency of these calls
    utilization: float | None = None  # busy slots / slots, 0..1
    rate_limit: int | None = None  # the queue's (live or configured); None or 0: none
    pool_per_worker: int | None = None  # Redis pool size per worker; None: no pool ceiling


@dataclass(frozen=True, slots=True)
class LawState:
    """What the law remembers between observations (kept in Redis: a new leader goes on
    where the previous one stopped)."""

    target: int
    latency_ms: float | None = None  # short EWMA
    arrival_per_s: float | None = None  # short EWMA
    baseline_ms: float | None = None  # long EWMA
    last_at: float | None = None
    changed_at: float | None = None
    direction: int = 0  # sign of the last change
    cap: int | None = None  # where congestion last showed: no increase above it for a while
    # Counts since the last change (the ratios and the gradient check judge the current
    # level only), and the completion rate before it.
    calls: int = 0
    errors: int = 0
    throttled: int = 0
    since_s: float = 0.0
    rate_before: float | None = None
    latency_before: float | None = None
    previous: int | None = None  # the level before the last change
    cause: str = ""  # what made the last change: bound, backoff, gradient, pressure, demand, calm
    cap_at: float | None = None  # when the cap was set
    probe_from: int | None = None  # a forgotten cap: above it, one deadband step at a time


@dataclass(frozen=True, slots=True)
class Decision:
    state: LawState
    previous: int
    target: int
    reason: str  # why it changed, or why it held (for the dashboard)
    kind: str  # "up", "down", "hold"

    @property
    def changed(self) -> bool:
        return self.target != self.previous


def staffing(offered_load: float) -> int:
    """Slots for an offered load of R busy slots (arrival rate × service time): the
    square-root staffing rule R + 2·√R (Halfin & Whitt 1981), which keeps the chance of
    waiting small for Poisson arrivals; 0 for no load."""
    if offered_load <= 0:
        return 0
    return math.ceil(offered_load + 2.0 * math.sqrt(offered_load))


def _ewma(old: float | None, sample: float, dt: float, tau: float) -> float:
    if old is None:
        return sample
    weight = 1.0 - math.exp(-max(dt, 0.0) / tau)
    return old + weight * (sample - old)


def _secs(ms: float | None) -> str:
    if ms is None:
        return "?"
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def decide(state: LawState, obs: Observation, cfg: LawConfig) -> Decision:
    """The next target after ``obs`` (see the module docstring for the law)."""
    if state.last_at is not None and obs.at_s < state.last_at:
        # The Redis server's clock went back (a failover to a replica behind, an NTP step):
        # saved times now lie in the future and would hold every cool-down (and the counts,
        # "settling") for as long as the step. Bring them back to now.
        state = replace(
            state,
            last_at=obs.at_s,
            changed_at=min(state.changed_at, obs.at_s) if state.changed_at is not None else None,
            cap_at=min(state.cap_at, obs.at_s) if state.cap_at is not None else None,
        )
    known = state.last_at is not None  # false for the very first observation
    dt = obs.at_s - state.last_at if state.last_at is not None else cfg.short_tau_s
    latency, baseline = state.latency_ms, state.baseline_ms
    if obs.calls and obs.latency_ms is not None:
        latency = _ewma(latency, obs.latency_ms, dt, cfg.short_tau_s)
        baseline = _ewma(baseline, obs.latency_ms, dt, cfg.baseline_tau_s)
    arrival = _ewma(state.arrival_per_s, obs.arrival_per_s, dt, cfg.short_tau_s)
    cur = state.target
    cap, cap_at, probe_from = state.cap, state.cap_at, state.probe_from
    if cap_at is not None and obs.at_s - cap_at > cfg.forget_after_s:
        # Long without congestion: probe again, from the old cap one step at a time.
        cap, cap_at, probe_from = None, None, cap
    if probe_from is not None and state.target >= 2 * probe_from:
        probe_from = None
    # Calls in flight at a change end at the old level, and workers report their calls once
    # a heartbeat: the counts of the new level start one latency + settle_s after it.
    settling = (
        state.changed_at is not None
        and latency is not None
        and obs.at_s - state.changed_at < latency / 1000 + cfg.settle_s
    )
    known = known and not settling
    st = replace(
        state,
        cap=cap,
        cap_at=cap_at,
        probe_from=probe_from,
        latency_ms=latency,
        baseline_ms=baseline,
        arrival_per_s=arrival,
        last_at=obs.at_s,
        # A first observation's interval is unknown: its counts would skew the rates.
        calls=state.calls + (obs.calls if known else 0),
        errors=state.errors + (obs.errors if known else 0),
        throttled=state.throttled + (obs.throttled if known else 0),
        since_s=state.since_s + (max(dt, 0.0) if known else 0.0),
    )
    workers = max(1, obs.workers)
    lo, hi = cfg.min_per_worker * workers, cfg.max_per_worker * workers
    ceiling, why_ceiling = hi, f"max {cfg.max_per_worker}/worker × {workers}"
    if obs.rate_limit and latency:
        by_rate = math.ceil(obs.rate_limit * latency / 1000 * cfg.rate_headroom)
        if by_rate < ceiling:
            ceiling = by_rate
            why_ceiling = f"rate limit {obs.rate_limit}/s × latency {_secs(latency)}"
    if obs.pool_per_worker is not None:
        by_pool = workers * max(1, obs.pool_per_worker - cfg.pool_reserved)
        if by_pool < ceiling:
            ceiling, why_ceiling = by_pool, f"Redis pool {obs.pool_per_worker}/worker"
    ceiling = max(lo, ceiling)

    def done(target: int, cause: str, reason: str, capped: bool = False) -> Decision:
        target = max(lo, min(ceiling, target))
        if target == cur:
            return Decision(st, cur, cur, reason, "hold")
        direction = 1 if target > cur else -1
        rate = (st.calls - st.errors) / st.since_s if st.since_s > 0 else None
        new = replace(
            st,
            target=target,
            changed_at=obs.at_s,
            direction=direction,
            calls=0,
            errors=0,
            throttled=0,
            since_s=0.0,
            rate_before=rate,
            latency_before=latency,
            previous=cur,
            cause=cause,
        )
        if capped:
            new = replace(new, cap=target, cap_at=obs.at_s, probe_from=None)
        kind = "up" if direction > 0 else "down"
        return Decision(new, cur, target, f"{reason}: {cur} → {target}", kind)

    since_change = obs.at_s - st.changed_at if st.changed_at is not None else math.inf
    # The bounds apply at once; a ceiling that follows the latency down (the rate limit's)
    # cuts once per cooldown, not at every reading of a falling latency.
    if cur < lo or cur > hi or (cur > ceiling and since_change >= cfg.cooldown_s):
        bound = "floor" if cur < lo else "ceiling"
        limit = f"min {cfg.min_per_worker}/worker × {workers}" if cur < lo else why_ceiling
        return done(cur, "bound", f"{bound} ({limit})")
    budget = cfg.budget_ms
    wait_share = obs.wait_ms / budget if budget > 0 else 0.0
    lat = f"latency {_secs(latency)} vs baseline {_secs(baseline)}"

    # 2. back off on 429s / errors (never held back by the reversal rule)
    if st.calls >= cfg.min_calls and since_change >= cfg.cooldown_s:
        throttled = st.throttled / st.calls
        errors = (st.errors - st.throttled) / st.calls
        if throttled >= cfg.throttle_ratio or errors >= cfg.error_ratio:
            what = (
                f"429s {throttled:.0%} of {st.calls} calls"
                if throttled >= cfg.throttle_ratio
                else f"errors {errors:.0%} of {st.calls} calls"
            )
            target = min(cur - 1, math.floor(cur * cfg.backoff))
            return done(target, "backoff", f"{what}, {lat}", capped=True)

    if since_change < cfg.cooldown_s:
        why = f"cooldown ({since_change:.1f} s < {cfg.cooldown_s:g} s)"
        return Decision(st, cur, cur, why, "hold")

    # 3. gradient: with enough work queued to keep every slot busy, the completion rate
    # is what the slots buy; compare it with the rate before the last change.
    rate_now = (st.calls - st.errors) / st.since_s if st.since_s > 0 else None
    if (
        st.previous is not None
        and st.rate_before
        and rate_now is not None
        and st.calls >= cfg.min_calls
        and obs.backlog >= cur
    ):
        gain = rate_now / st.rate_before - 1
        was = (
            f"{st.previous} slots completed {st.rate_before:.1f}/s, {cur} complete {rate_now:.1f}/s"
        )
        rose = (
            st.latency_before is not None
            and latency is not None
            and latency >= st.latency_before * 1.2
        )
        if st.direction > 0 and st.cause == "pressure" and gain < cfg.gain and rose:
            why = f"{was} while latency rose {_secs(st.latency_before)} → {_secs(latency)}"
            return done(st.previous, "gradient", f"{why}: the broker is saturated", capped=True)
        if st.direction < 0 and st.cause in ("backoff", "gradient"):
            if gain > cfg.gain:  # fewer slots completed more: the broker was overloaded
                target = min(cur - 1, math.floor(cur * cfg.backoff))
                return done(target, "gradient", f"{was}, {lat}: fewer do more", capped=True)
            if gain < -cfg.gain:  # fewer slots completed less: one step too far
                return done(st.previous, "gradient", f"{was}: back up", capped=True)

    reversal_ok = st.direction == 0 or since_change >= 2 * cfg.cooldown_s
    offered = None
    if latency is not None:
        drain = obs.backlog / (budget / 2000) if budget > 0 else 0.0
        offered = (arrival + drain) * latency / 1000
    demand = staffing(offered) if offered is not None else None
    util = obs.utilization
    step = max(1, math.ceil(cur * cfg.deadband))

    # 4. increase under pressure, or when busy and short of the demand
    pressured = wait_share >= cfg.pressure and obs.backlog > 0
    busy = util is not None and util >= cfg.busy and demand is not None and demand > cur
    if (pressured or busy) and (st.direction >= 0 or reversal_ok):
        # Under pressure at least a deadband's step; for the demand alone, only a demand
        # beyond the deadband counts (one slot short of it is noise).
        want = max(cur + step, demand or 0) if pressured else (demand or 0)
        want = min(want, cur * 2)
        if st.cap is not None:
            want = min(want, max(st.cap, cur))  # congestion showed there: not above it
        if st.probe_from is not None and want > max(cur, st.probe_from):
            want = min(want, max(cur, st.probe_from) + step)  # probing past an old cap
        if pressured:
            why = (
                f"oldest wait {_secs(obs.wait_ms)} ≥ {cfg.pressure:.0%} of the "
                f"{_secs(budget)} budget"
            )
        else:
            why = f"utilization {util:.0%} and demand {demand} > {cur} slots"
        why += f", {lat}, arrival {arrival:.1f}/s, backlog {obs.backlog}"
        if demand is not None:
            why += f", demand {demand}"
        if want > cur and (pressured or want - cur >= step):
            return done(want, "pressure" if pressured else "demand", why)

    # 5. decrease when calm and idle
    calm = wait_share < cfg.calm and (util is None or util < cfg.idle)
    # Down to the demand of a load ``shrink_margin`` higher than measured: the gap between
    # this and the increase rule is the hysteresis that measurement noise cannot cross.
    keep = staffing(offered * cfg.shrink_margin) if offered is not None else None
    if calm and keep is not None and keep < cur and (st.direction <= 0 or reversal_ok):
        want = max(keep, cur - max(1, cur // 4))
        if cur - want >= step:
            why = (
                f"calm (oldest wait {_secs(obs.wait_ms)}, utilization "
                f"{'?' if util is None else f'{util:.0%}'}), demand {demand} "
                f"(+{cfg.shrink_margin - 1:.0%}: {keep}), {lat}"
            )
            return done(want, "calm", why)
    why = (
        f"steady: oldest wait {_secs(obs.wait_ms)}, utilization "
        f"{'?' if util is None else f'{util:.0%}'}, demand {demand if demand is not None else '?'}"
        f", {lat}"
    )
    return Decision(st, cur, cur, why, "hold")
