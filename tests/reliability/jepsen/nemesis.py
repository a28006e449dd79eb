"""The nemesis: faults on a random schedule, one at a time, recorded with their times.

Everything random comes from one ``random.Random(seed)``, so a seed names a schedule (which
faults, on which process, for how long, with which gaps); the interleaving with traffic is
left to the machine. One event at a time keeps every run meaningful: never two Redis
restarts at once, never every worker paused together, and each event's effect can be told
apart in the history. Each event undoes itself (resume, heal, restart) before the next
starts; :meth:`Nemesis.run` heals everything when it ends, however it ends.

The kinds, and what they imitate:

- ``pause``: SIGSTOP a worker for 2.5–5 s, longer than its 2 s lease (a GC or VM pause): it
  wakes up believing it still owns jobs that were handed to someone else;
- ``partition``: cut one worker off Redis for 2–6 s, either refused and reset (a crash of
  the path) or stalled (packets dropped, what was sent arrives late, in order);
- ``lose_replies``: the next 1–3 answers to one worker (or the API) vanish after Redis
  executed the command: the client sees a connection error and may send it again;
- ``delay``: answers to one process arrive 50–300 ms late for 1–4 s;
- ``kill_worker`` / ``kill_api``: SIGKILL, restarted after 0.5–2 s;
- ``restart_redis``: SIGKILL the server and start it again on the same port (its
  ``appendfsync always`` file keeps what it acknowledged).

The durations are the faults' own phase lengths, hence the sleeps.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping

from .cluster import Cluster, Member
from .model import FaultEvent

# How many of each kind a deck holds. Kinds are dealt from shuffled decks (a new deck when
# one runs out), so every kind comes once per deck: a short run still sees each kind, a long
# one sees them in these proportions. Cheap, short faults come more often so a long run
# reaches hundreds of events; the process-level ones still come every few dozen seconds.
WEIGHTS: Mapping[str, int] = {
    "pause": 2,
    "partition": 2,
    "lose_replies": 3,
    "delay": 2,
    "kill_worker": 2,
    "kill_api": 1,
    "restart_redis": 1,
}
EVEN: Mapping[str, int] = dict.fromkeys(WEIGHTS, 1)  # one of each kind per deck
GAP_S = (0.5, 3.0)  # quiet time between two events
LOSS_WINDOW_S = 1.5  # how long lost replies stay armed before they are called off


class Nemesis:
    """Breaks ``cluster`` for a while; :attr:`events` is what it did."""

    def __init__(
        self,
        cluster: Cluster,
        seed: int,
        *,
        gap_s: tuple[float, float] = GAP_S,
        weights: Mapping[str, int] = WEIGHTS,
    ) -> None:
        self.cluster = cluster
        self.seed = seed
        self.rng = random.Random(seed)
        self.gap_s = gap_s
        self.deck_template = [kind for kind, n in weights.items() for _ in range(n)]
        self.deck: list[str] = []
        self.events: list[FaultEvent] = []

    def _deal(self) -> str:
        if not self.deck:
            self.deck = list(self.deck_template)
            self.rng.shuffle(self.deck)
        return self.deck.pop()

    async def run(self, duration_s: float) -> list[FaultEvent]:
        """Perform events until ``duration_s`` has passed (the last one is finished, not
        cut short); then heal the cluster."""
        print(f"nemesis seed={self.seed}")
        deadline = time.monotonic() + duration_s
        try:
            while True:
                await asyncio.sleep(self.rng.uniform(*self.gap_s))  # the quiet phase
                if time.monotonic() >= deadline:
                    break
                self.events.append(await getattr(self, f"_{self._deal()}")())
        finally:
            await self.cluster.heal()
        return self.events

    def _worker(self) -> Member:
        return self.rng.choice(self.cluster.workers)

    async def _hold(self, low_s: float, high_s: float) -> float:
        """Keep a fault in force for a random time (its phase length)."""
        held = self.rng.uniform(low_s, high_s)
        await asyncio.sleep(held)
        return held

    async def _pause(self) -> FaultEvent:
        worker = self._worker()
        start = time.time()
        self.cluster.pause(worker)
        try:
            held = await self._hold(2.5, 5.0)
        finally:
            self.cluster.resume(worker)
        return FaultEvent("pause", worker.name, start, time.time(), f"{held:.1f}s")

    async def _partition(self) -> FaultEvent:
        worker = self._worker()
        proxy = worker.proxy
        how = self.rng.choice(("refuse", "stall"))
        start = time.time()
        if how == "refuse":
            await proxy.refuse(True)
            await proxy.drop()
        else:
            proxy.stall(True)
        try:
            held = await self._hold(2.0, 6.0)
        finally:
            proxy.stall(False)
            await proxy.refuse(False)
        return FaultEvent("partition", worker.name, start, time.time(), f"{how} {held:.1f}s")

    async def _lose_replies(self) -> FaultEvent:
        member = self.rng.choice(self.cluster.members)
        proxy = member.proxy
        n = self.rng.randint(1, 3)
        before = proxy.stats.replies_lost
        start = time.time()
        proxy.lose_replies(n)
        try:
            await asyncio.sleep(LOSS_WINDOW_S)  # the armed phase; losses land as traffic does
        finally:
            proxy.lose_replies(0)
        lost = proxy.stats.replies_lost - before
        return FaultEvent("lose_replies", member.name, start, time.time(), f"{lost}/{n} lost")

    async def _delay(self) -> FaultEvent:
        member = self.rng.choice(self.cluster.members)
        ms = self.rng.uniform(50, 300)
        start = time.time()
        member.proxy.set_latency(0, ms)
        try:
            held = await self._hold(1.0, 4.0)
        finally:
            member.proxy.set_latency(0)
        return FaultEvent("delay", member.name, start, time.time(), f"{ms:.0f}ms {held:.1f}s")

    async def _kill_worker(self) -> FaultEvent:
        worker = self._worker()
        start = time.time()
        await self.cluster.kill(worker)
        down = await self._hold(0.5, 2.0)
        took = await self.cluster.start_worker(worker)
        detail = f"down {down:.1f}s, restart {took:.1f}s"
        return FaultEvent("kill_worker", worker.name, start, time.time(), detail)

    async def _kill_api(self) -> FaultEvent:
        start = time.time()
        await self.cluster.kill(self.cluster.api)
        down = await self._hold(0.5, 2.0)
        took = await self.cluster.start_api()
        detail = f"down {down:.1f}s, restart {took:.1f}s"
        return FaultEvent("kill_api", "api", start, time.time(), detail)

    async def _restart_redis(self) -> FaultEvent:
        start = time.time()
        await self.cluster.crash_redis()
        down = await self._hold(0.2, 1.0)
        took = await self.cluster.start_redis()
        detail = f"down {down:.1f}s, AOF loaded in {took:.2f}s"
        return FaultEvent("restart_redis", "redis", start, time.time(), detail)
