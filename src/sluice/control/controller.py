"""The queue's concurrency controller: one per queue, in whichever process holds its lease.

Every worker process of a queue in adaptive mode runs a :class:`ConcurrencyController`;
the leader lease (:class:`sluice.monitor.leader.LeaderLease`, key ``adaptive:leader``)
makes exactly one of them decide. Each step the leader

1. reads what the law needs (:meth:`ConcurrencyController.observe`): the queue's counts
   (oldest wait of a ready lane, backlog), the enqueue counter (arrival rate), the brokers'
   cumulative call counters (:mod:`sluice.broker.meter`: calls, errors, 429s, latency),
   the worker registry (live workers, utilization) and the live settings (rate limit,
   operator override);
2. applies the law (:func:`sluice.control.law.decide`) to the state saved in Redis, so a
   new leader goes on where the previous one stopped;
3. writes the state, and on a change the new ``target``, an event with the reason on the
   queue's event stream (type ``concurrency``), the decision counters, and a ``concurrency``
   message on the control channel so every worker takes its new share at once (each also
   re-reads it every heartbeat, :mod:`sluice.control.share`).

An operator's live override (:meth:`sluice.queue.queue.Queue.set_concurrency`, slots per
worker) wins: while it is set every worker runs that many slots, and the controller holds,
saying so once as an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from sluice.broker.meter import BrokerTally, read_totals
from sluice.control.law import Decision, LawConfig, LawState, Observation, decide
from sluice.monitor.leader import LeaderLease, default_holder
from sluice.monitor.windows import server_time
from sluice.queue.queue import Queue
from sluice.settings.config import Settings
from sluice.worker import registry

__all__ = [
    "ConcurrencyController",
    "ControllerStatus",
    "controller_from_settings",
    "read_status",
    "target_history",
]

log = logging.getLogger("sluice.control")

EVENT_TYPE = "concurrency"
LEASE_TTL_MS = 5_000


@dataclass(frozen=True, slots=True)
class _Counters:
    at_s: float
    enqueued: int
    broker: BrokerTally


class ConcurrencyController:
    """Decides the queue's global slot count every ``interval_s`` while it leads.

    ``configured`` is WORKER_CONCURRENCY (per worker): the starting target is that times the
    live workers. ``rate_limit`` is the configured one (a live one wins); ``pool_size`` the
    Redis pool per worker process (None: no pool ceiling)."""

    def __init__(
        self,
        queue: Queue,
        config: LawConfig,
        *,
        configured: int,
        rate_limit: int = 0,
        pool_size: int | None = None,
        interval_s: float = 1.0,
        heartbeat_ms: int = 1_000,
        lease: LeaderLease | None = None,
    ) -> None:
        self.queue = queue
        self.config = config
        self.configured = configured
        self.rate_limit = rate_limit
        self.pool_size = pool_size
        self.interval_s = interval_s
        self.live_s = heartbeat_ms * 5 / 1000
        self.lease = lease or LeaderLease(
            queue.redis, queue.keys.adaptive_leader, default_holder(), LEASE_TTL_MS
        )
        self._last: _Counters | None = None
        self._override_said: int | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_decision: Decision | None = None

    # ------------------------------------------------------------------ loop

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"concurrency controller {self.queue}")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.lease.release()

    async def run(self) -> None:
        """Step every ``interval_s`` until :meth:`stop`; an error is logged, never fatal."""
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await self.step()
            except Exception:
                log.exception("concurrency controller step failed on queue %s", self.queue.name)
                self._last = None  # counters may be from before a gap: start the diffs again
            remaining = self.interval_s - (time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, remaining))

    async def step(self) -> Decision | None:
        """One iteration; the decision when this process leads, else None."""
        held = self.lease.held
        ok = await (self.lease.renew() if held else self.lease.acquire())
        if not ok:
            self._last = None
            return None
        if not held:
            log.info("concurrency controller of queue %s is now the leader", self.queue.name)
        live = await self.queue.live_settings()
        if live["concurrency"] is not None:
            await self._hold_for_override(live["concurrency"])
            return None
        self._override_said = None
        observation, workers = await self.observe(live["rate_limit"])
        if observation is None:
            return None
        state = await self._load_state(workers)
        decision = decide(state, observation, self.config)
        if not self.lease.held:
            return None  # the lease ran out meanwhile: someone else may decide now
        await self._save(decision, observation)
        self.last_decision = decision
        return decision

    # ------------------------------------------------------------------ inputs

    async def observe(self, live_rate: int | None) -> tuple[Observation | None, list[Any]]:
        """What the law needs, now; None on the first call (the rates need two readings)."""
        queue = self.queue
        counts = await queue.counts()
        workers = await registry.live_workers(queue.redis, queue.keys, stale_after_s=self.live_s)
        enqueued = 0
        for engine in await queue.current_engines():
            raw = await queue.redis.hget(engine.keys.mon_total, "enq")
            enqueued += int(raw) if raw is not None else 0
        broker = await read_totals(queue.redis, queue.keys)
        now = await server_time(queue.redis)
        current = _Counters(now, enqueued, broker)
        last, self._last = self._last, current
        if last is None or now <= last.at_s:
            return None, workers
        elapsed = now - last.at_s
        calls = broker.minus(last.broker)
        slots = sum(int(w.get("slots", 0)) for w in workers)
        busy = sum(float(w.get("utilization", 0.0)) * int(w.get("slots", 0)) for w in workers)
        wait_ms = float(counts["oldest_waiting_age_ms"]) if counts["ready_lanes"] else 0.0
        rate = live_rate if live_rate is not None else self.rate_limit
        observation = Observation(
            at_s=now,
            workers=len(workers),
            wait_ms=wait_ms,
            backlog=int(counts["waiting"]),
            arrival_per_s=max(0, enqueued - last.enqueued) / elapsed,
            calls=calls.calls,
            errors=calls.errors,
            throttled=calls.throttled,
            latency_ms=calls.mean_latency_ms,
            utilization=busy / slots if slots else None,
            rate_limit=rate or None,
            pool_per_worker=self.pool_size,
        )
        return observation, workers

    # ------------------------------------------------------------------ state

    async def _load_state(self, workers: list[Any]) -> LawState:
        raw = await self.queue.redis.hget(self.queue.keys.adaptive, "law")
        if raw:
            try:
                return LawState(**json.loads(raw))
            except (TypeError, ValueError):
                log.warning("unreadable controller state of queue %s: starting afresh", self.queue)
        start = sum(int(w.get("slots", 0)) for w in workers) or self.configured
        return LawState(target=max(1, start))

    async def _save(self, decision: Decision, obs: Observation) -> None:
        keys = self.queue.keys
        state = decision.state
        fields: dict[Any, Any] = {
            "law": json.dumps(asdict(state)),
            "target": state.target,
            "status": decision.reason,
            "workers": obs.workers,
            "latency_ms": round(state.latency_ms or 0.0, 1),
            "baseline_ms": round(state.baseline_ms or 0.0, 1),
            "min": self.config.min_per_worker * max(1, obs.workers),
            "max": self.config.max_per_worker * max(1, obs.workers),
        }
        pipe = self.queue.redis.pipeline(transaction=True)
        if decision.changed:
            fields |= {"reason": decision.reason, "changed_at": obs.at_s, "kind": decision.kind}
            pipe.hincrby(keys.adaptive, f"decisions_{decision.kind}", 1)
            pipe.xadd(
                keys.events,
                {
                    "type": EVENT_TYPE,
                    "job": "",
                    "key": "target",
                    "info": decision.reason,
                    "target": decision.target,
                },
                maxlen=10_000,
                approximate=True,
            )
        pipe.hset(keys.adaptive, mapping=fields)
        await pipe.execute()
        if decision.changed:
            await self.queue.redis.publish(keys.control, "concurrency")
            log.info("queue %s concurrency %s", self.queue.name, decision.reason)

    async def _hold_for_override(self, slots: int) -> None:
        """An operator's override wins: hold, and say so once."""
        if self._override_said == slots:
            return
        self._override_said = slots
        reason = f"operator override: {slots} slots per worker; the controller holds"
        keys = self.queue.keys
        pipe = self.queue.redis.pipeline(transaction=True)
        pipe.hset(keys.adaptive, mapping={"status": reason})
        pipe.xadd(
            keys.events,
            {"type": EVENT_TYPE, "job": "", "key": "override", "info": reason},
            maxlen=10_000,
            approximate=True,
        )
        await pipe.execute()
        log.info("queue %s: %s", self.queue.name, reason)


@dataclass(frozen=True, slots=True)
class ControllerStatus:
    """What the dashboard and /metrics show of the controller (from Redis)."""

    target: int | None
    status: str | None
    reason: str | None
    changed_at: float | None
    latency_ms: float | None
    baseline_ms: float | None
    decisions: dict[str, int]
    bounds: tuple[int, int] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "status": self.status,
            "reason": self.reason,
            "changed_at": self.changed_at,
            "latency_ms": self.latency_ms,
            "baseline_ms": self.baseline_ms,
            "decisions": self.decisions,
            "min": self.bounds[0] if self.bounds else None,
            "max": self.bounds[1] if self.bounds else None,
        }


async def read_status(queue: Queue) -> ControllerStatus:
    """The controller's last written state (all None before its first step)."""
    raw = await queue.redis.hgetall(queue.keys.adaptive)
    data = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }

    def num(name: str) -> float | None:
        return float(data[name]) if name in data else None

    target = num("target")
    low, high = num("min"), num("max")
    return ControllerStatus(
        target=int(target) if target is not None else None,
        status=data.get("status"),
        reason=data.get("reason"),
        changed_at=num("changed_at"),
        latency_ms=num("latency_ms"),
        baseline_ms=num("baseline_ms"),
        decisions={kind: int(data.get(f"decisions_{kind}", 0)) for kind in ("up", "down")},
        bounds=(int(low), int(high)) if low is not None and high is not None else None,
    )


def controller_from_settings(settings: Settings, queue: Queue) -> ConcurrencyController | None:
    """The queue's controller as the settings configure it; None in static mode."""
    if settings.worker_concurrency_mode != "adaptive":
        return None
    config = LawConfig(
        min_per_worker=settings.worker_concurrency_min,
        max_per_worker=settings.worker_concurrency_max,
        budget_ms=settings.sla_warning_threshold_ms,
        cooldown_s=settings.worker_concurrency_cooldown_s,
        settle_s=2 * settings.heartbeat_ms / 1000,  # workers report once a heartbeat
    )
    return ConcurrencyController(
        queue,
        config,
        configured=settings.worker_concurrency,
        rate_limit=settings.queue_rate_limit,
        pool_size=settings.redis_pool_max_connections if settings.redis_pool_enabled else None,
        interval_s=settings.heartbeat_ms / 1000,
        heartbeat_ms=settings.heartbeat_ms,
    )


async def target_history(queue: Queue, since_ms: int, limit: int = 2000) -> list[dict[str, Any]]:
    """The target's changes since ``since_ms`` (epoch ms), oldest first, from the event
    stream: ``{"t": epoch s, "target": n, "reason": text}``."""
    raw: Any = await queue.redis.xrevrange(queue.keys.events, "+", since_ms, count=limit)
    changes = []
    for entry_id, fields in reversed(raw or []):
        data = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()
        }
        if data.get("type") != EVENT_TYPE or "target" not in data:
            continue
        ms = int((entry_id.decode() if isinstance(entry_id, bytes) else entry_id).split("-")[0])
        changes.append({"t": ms / 1000, "target": int(data["target"]), "reason": data["info"]})
    return changes
