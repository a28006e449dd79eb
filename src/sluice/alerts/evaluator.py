"""The alert evaluator loop: lease, load, apply commands, evaluate, save, notify.

Any number of processes run it; the lease makes exactly one of them act. Each iteration:

1. the leader renews its lease, any other process tries to take it;
2. a process that has just become leader loads the state saved by the previous one (its
   own in-memory state may be arbitrarily stale), so a takeover neither forgets a firing
   alert nor announces it a second time;
3. the leader applies pending acknowledgements and silences (:mod:`.store` explains
   why the API does not write the state itself), reads the signals and evaluates;
4. it saves the state, the history and the consumed commands in one transaction fenced
   by the lease, and only then hands the notifications to the dispatcher, which never
   blocks (:mod:`.channels`).

A leader that loses its lease (renew refused, lease expired by its own clock, or the
fenced save refused) stops acting at once: it does not save and does not notify, and the
next time it leads it starts again from the saved state. Any error inside a leader
iteration has the same effect, so a notification lost with a failed save is produced
again from the saved state instead of being silently skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from sluice.alerts.channels import Dispatcher
from sluice.alerts.engine import AlertEngine
from sluice.alerts.model import Notification
from sluice.alerts.store import AlertCommand, AlertStore
from sluice.keys import QueueKeys
from sluice.monitor.leader import LeaderLease, default_holder
from sluice.monitor.signals import Signals

__all__ = ["AlertEvaluator"]

log = logging.getLogger("sluice.alerts")


class AlertEvaluator:
    """Runs one queue's :class:`AlertEngine` in whichever process holds the lease.

    ``store`` and ``lease`` may be None to use the standard ones for ``queue_keys`` on
    ``redis`` (the lease TTL then comes from the engine's settings). The dispatcher is
    not owned: close it after :meth:`stop`.
    """

    def __init__(
        self,
        redis: aioredis.Redis | aioredis.RedisCluster,
        queue_keys: QueueKeys,
        engine: AlertEngine,
        store: AlertStore | None,
        dispatcher: Dispatcher,
        lease: LeaderLease | None,
        signals_source: Callable[[], Awaitable[Signals]],
        interval_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.queue_keys = queue_keys
        self.engine = engine
        self.store = store or AlertStore(redis, queue_keys)
        self.dispatcher = dispatcher
        self.lease = lease or LeaderLease(
            redis, self.store.lease_key, default_holder(), engine.settings.lease_ttl_ms
        )
        if interval_s <= 0 or interval_s * 1000 >= self.lease.ttl_ms:
            raise ValueError(
                f"interval_s ({interval_s}) must be positive and shorter than the lease TTL "
                f"({self.lease.ttl_ms} ms), or the lease expires between renewals"
            )
        self.signals_source = signals_source
        self.interval_s = interval_s
        self.clock = clock
        self._leading = False
        self._stop = asyncio.Event()
        self._running = False
        self._done = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        """Whether this process is acting as leader right now."""
        return self._leading and self.lease.held

    async def step(self) -> bool:
        """One iteration; True if this process acted as leader (and saved its work)."""
        if not await self._hold_lease():
            return False
        try:
            return await self._lead()
        except Exception:
            # The in-memory state may now be ahead of the saved one: reload before acting again.
            self._leading = False
            log.exception("alert evaluation failed on queue %s", self.queue_keys.name)
            return False

    async def run(self) -> None:
        """Evaluate every ``interval_s`` until :meth:`stop`; never raises on a bad iteration."""
        self._running = True
        self._done.clear()
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    await self.step()
                except Exception:  # step handles its own errors; this is the last resort
                    log.exception("alert evaluator iteration failed")
                remaining = self.interval_s - (time.monotonic() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), max(0.0, remaining))
        finally:
            self._running = False
            self._done.set()

    async def stop(self) -> None:
        """Stop the loop (if running) and release the lease so a peer takes over at once."""
        self._stop.set()
        if self._running:
            await self._done.wait()
        self._leading = False
        try:
            await self.lease.release()
        except Exception:
            log.warning("could not release the alert leader lease; it expires on its own")

    async def _hold_lease(self) -> bool:
        was_leading = self._leading
        try:
            ok = await (self.lease.renew() if was_leading else self.lease.acquire())
        except Exception as exc:
            log.warning("alert leader lease unavailable: %s", type(exc).__name__)
            ok = False
        if not ok and was_leading:
            log.warning("lost the alert leader lease of queue %s", self.queue_keys.name)
            self._leading = False
        return ok

    async def _lead(self) -> bool:
        if not self._leading:
            state = await self.store.load()
            try:
                if state is None:
                    self.engine.reset()
                else:
                    self.engine.restore(state)
            except ValueError:
                log.exception(
                    "unreadable alert state of queue %s; starting afresh", self.queue_keys.name
                )
                self.engine.reset()
            self._leading = True
            log.info(
                "alert evaluator of queue %s is now the leader (%s)",
                self.queue_keys.name,
                self.lease.holder_id,
            )
        now = self.clock()
        commands, consumed = await self.store.pending_commands()
        for command in commands:
            self._apply(command, now)
        notifications: list[Notification] = []
        try:
            signals = await self.signals_source()
        except Exception:
            log.exception("alert signals unavailable for queue %s", self.queue_keys.name)
        else:
            notifications = self.engine.evaluate(signals, now)
        entries = self.engine.take_history()
        if not self.lease.held:
            self._leading = False
            log.warning("alert leader lease ran out during evaluation; not acting on it")
            return False
        if not await self.store.commit(self.engine, entries, consumed, fence=self.lease):
            self._leading = False
            log.warning("alert state save refused: another process holds the lease")
            return False
        # Every alert's snapshot too: a receiver that forgets alerts not sent again
        # (Alertmanager) gets its re-sends from the leader, at the evaluation's time.
        self.dispatcher.submit(notifications, self.engine.alerts(), now)
        return True

    def _apply(self, command: AlertCommand, now: float) -> None:
        try:
            if command.op == "ack":
                if not self.engine.ack(command.target, command.by, now):
                    log.info("ack of %s ignored: not pending or firing", command.target)
            elif command.op == "silence" and command.until is not None:
                self.engine.silence(command.target, command.until, command.by, now)
            elif command.op == "unsilence":
                self.engine.unsilence(command.target, command.by, now)
        except KeyError:
            log.warning("alert command %s for unknown alert %r ignored", command.op, command.target)
        except ValueError as exc:
            log.warning("alert command %s for %s ignored: %s", command.op, command.target, exc)
