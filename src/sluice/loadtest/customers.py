"""The customers: each writes (sometimes a burst), waits for the reply, thinks and writes
again, all of them together keeping to the offered rate; the tally is what they saw."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

from sluice.loadtest.config import ACCOUNT, LINES, LoadConfig
from sluice.loadtest.remote import ChatwootSide
from sluice.monitor.histogram import Histogram


@dataclass
class Tally:
    sent: int = 0
    replied: int = 0
    missing: int = 0
    turns: int = 0
    bursts: int = 0
    errors: int = 0  # customers stopped by an error talking to Chatwoot (not a missing reply)
    sla_ms: Histogram = field(default_factory=Histogram)
    samples: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def record(self, sla_ms: float) -> None:
        self.replied += 1
        self.sla_ms.observe(sla_ms)
        self.samples.append(sla_ms)

    def within(self, limit_ms: float) -> float | None:
        if not self.samples:
            return None
        return sum(1 for s in self.samples if s <= limit_ms) / len(self.samples)


class TokenBucket:
    """The offered rate shared by all customers (no burst allowance beyond one second)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.next_at = time.monotonic()

    def charge(self) -> None:
        """Count a message sent without waiting (the later lines of a burst)."""
        self.next_at += 1.0 / self.rate

    async def take(self) -> None:
        now = time.monotonic()
        self.next_at = max(self.next_at, now - 1.0) + 1.0 / self.rate
        delay = self.next_at - now
        if delay > 0:
            await asyncio.sleep(delay)


async def customer(
    sim: ChatwootSide,
    cfg: LoadConfig,
    bucket: TokenBucket,
    tally: Tally,
    stop: asyncio.Event,
    rng: random.Random,
) -> None:
    if cfg.ramp_up_s > 0:
        with contextlib.suppress(TimeoutError):
            # Arrival within the ramp-up; the stop event ends the wait early.
            await asyncio.wait_for(stop.wait(), rng.uniform(0, cfg.ramp_up_s))
        if stop.is_set():
            return
    conversation = await sim.create_conversation(ACCOUNT)
    n = 0
    while not stop.is_set():
        burst = rng.randint(2, cfg.burst_max) if rng.random() < cfg.burst_probability else 1
        created: list[float] = []
        last_id = 0
        await bucket.take()  # a burst is typed at once; its extra lines are charged after
        for line in range(burst):
            if line:
                bucket.charge()
            if stop.is_set():
                break
            n += 1
            text = rng.choice(LINES).format(n=1000 + n)
            message = await sim.customer_message(ACCOUNT, conversation, text)
            created.append(
                float(message["created_at_epoch"]) if "created_at_epoch" in message else time.time()
            )
            last_id = int(message["id"])
            tally.sent += 1
        if not created:
            break
        tally.turns += 1
        tally.bursts += burst > 1
        try:
            reply = await sim.wait_for_reply(
                ACCOUNT, conversation, after_message_id=last_id, timeout=cfg.reply_timeout_s
            )
        except TimeoutError:
            tally.missing += len(created)
            continue
        except Exception:  # the simulator unreachable: the lines still count, as missing
            tally.missing += len(created)
            tally.errors += 1
            raise
        received = float(reply["received_at"])
        for at in created:
            tally.record(max(0.0, (received - at) * 1000))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(*cfg.think_s))


def start_customers(
    sim: ChatwootSide, cfg: LoadConfig, tally: Tally, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    """``cfg.conversations`` customers sharing one offered rate, each with its own
    reproducible random stream (seeded from ``cfg.seed``)."""
    rng = random.Random(cfg.seed)
    bucket = TokenBucket(cfg.rate)
    return [
        asyncio.create_task(customer(sim, cfg, bucket, tally, stop, random.Random(rng.random())))
        for _ in range(cfg.conversations)
    ]
