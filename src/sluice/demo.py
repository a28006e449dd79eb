"""Demo traffic: many conversations whose customers write, wait for a reply, write again.

Until the Chatwoot pipeline lands, the demo handler stands in for a broker: it "thinks"
for a short random time and marks the reply hops, so the timing of every hop is real.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

from sluice.queue.job import Job
from sluice.queue.queue import Queue

LINES = (
    "Hi, where is my order?",
    "It was supposed to arrive yesterday.",
    "Can I change the delivery address?",
    "Do you ship to Norway?",
    "Thanks!",
    "The tent pole is broken, can I get a replacement?",
)


async def demo_handler(job: Job) -> None:
    """A broker stand-in: 20-120 ms to 'generate' a reply, then 'send' it."""
    job.mark("broker_assigned")
    await asyncio.sleep(random.uniform(0.02, 0.12))
    job.mark("reply_generated")
    job.mark("reply_sent")


async def produce(
    queue: Queue,
    *,
    conversations: int,
    rate: float,
    duration_s: float,
    stop: asyncio.Event,
) -> int:
    """Offer ``rate`` messages per second spread over ``conversations`` for ``duration_s``
    (0 = until ``stop``). Returns how many were enqueued."""
    sent = 0
    started = time.monotonic()
    interval = 1.0 / rate if rate > 0 else 0.0
    while not stop.is_set():
        elapsed = time.monotonic() - started
        if duration_s and elapsed >= duration_s:
            break
        due = int(elapsed * rate) + 1 - sent
        for _ in range(max(0, due)):
            conv = random.randrange(conversations)
            now_ms = time.time() * 1000
            await queue.enqueue(
                f"demo:{conv}",
                {"text": random.choice(LINES), "conversation": conv},
                id=f"demo-{int(started)}-{sent}",
                hops={"source_created": now_ms - random.uniform(50, 400), "received": now_ms},
            )
            sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(interval, 0.005))
    return sent
