"""Recording a Jepsen run: the queue's event stream, tailed live, and what the fake
Chatwoot and the queue hold once the run has settled.

The recorder reads ``sluice:{<queue>}:events`` straight from Redis (never through a fault
proxy: the observer must not be the one that is faulted), from id 0, and keeps every
entry. Redis restarts under it: it reconnects and goes on after the last id it has, which
the append-only file (``appendfsync always``) kept. The stream is capped at about 10,000
entries, so a recorder that fell that far behind would miss some: it checks, after each
reconnection, that the oldest entry still in the stream is not newer than the last one it
read, and reports a gap otherwise (the checker turns it into a violation: a history with
holes proves nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from sluice.keys import QueueKeys
from sluice.queue.queue import Queue
from sluice.simulator import ChatwootSimulator

from ...e2e.test_chatwoot_e2e import ACCOUNT
from ..test_faults import accepted_messages
from .model import Event, Incoming, JobFacts, Observation, Reply, stream_id

log = logging.getLogger("tests.jepsen")

READ_COUNT = 1000
BLOCK_MS = 1000
RECONNECT_S = 0.1  # between attempts to reach a Redis that is restarting


class Recorder:
    """Tails the event stream of ``queue`` on the Redis at ``url`` into :attr:`events`
    (run :meth:`run` as a task; :meth:`caught_up` waits until it has read everything)."""

    def __init__(self, url: str, queue: str) -> None:
        self.url = url
        self.stream = QueueKeys(queue).events
        self.events: list[Event] = []
        self.gaps: list[str] = []
        self.reconnects = 0
        self._last = "0-0"
        self._progress = asyncio.Event()

    def _client(self) -> aioredis.Redis:
        # No retries of its own: a failed read is handled here, from the last id read.
        return aioredis.Redis.from_url(
            self.url,
            decode_responses=True,
            socket_connect_timeout=1,
            socket_timeout=BLOCK_MS / 1000 + 2,
            retry=Retry(NoBackoff(), 0),
        )

    async def run(self) -> None:
        """Read until cancelled, reconnecting whenever Redis goes away."""
        while True:
            client = self._client()
            try:
                await self._check_gap(client)
                while True:
                    await self._read(client)
            except (RedisError, OSError) as exc:
                log.debug("event stream unreachable (%r); reconnecting", exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
            # Redis is restarting: nothing to await but its return (connection attempts).
            await asyncio.sleep(RECONNECT_S)

    async def _read(self, client: aioredis.Redis) -> None:
        # redis-py types its answers loosely: [[stream, [(id, {field: value})]]] here.
        answer: Any = await client.xread(
            {self.stream: self._last}, count=READ_COUNT, block=BLOCK_MS
        )
        for _stream, entries in answer or []:
            for entry_id, fields in entries:
                self.events.append(
                    Event(
                        id=entry_id,
                        type=fields.get("type", ""),
                        job=fields.get("job", ""),
                        key=fields.get("key", ""),
                        info=fields.get("info", ""),
                    )
                )
                self._last = entry_id
        self._progress.set()

    async def _check_gap(self, client: aioredis.Redis) -> None:
        if self._last == "0-0":
            return
        first: Any = await client.xrange(self.stream, count=1)
        self.reconnects += 1  # reached Redis again after losing it
        if first and stream_id(first[0][0]) > stream_id(self._last):
            self.gaps.append(
                f"the stream starts at {first[0][0]}, after the last entry read ({self._last}):"
                " entries in between may have been trimmed unread"
            )

    async def caught_up(self, timeout_s: float = 30.0) -> None:
        """Wait until every entry in the stream right now has been read."""
        client = self._client()
        try:
            newest: Any = await client.xrevrange(self.stream, count=1)
        finally:
            await client.aclose()
        if not newest:
            return
        target = stream_id(newest[0][0])
        async with asyncio.timeout(timeout_s):
            while stream_id(self._last) < target:
                self._progress.clear()
                await self._progress.wait()


async def _dead_letters(queue: Queue) -> dict[str, JobFacts]:
    """Every dead letter of the queue, including jobs of messages that were never
    accepted (their webhook's 2xx was lost, but the job was enqueued and ran)."""
    facts: dict[str, JobFacts] = {}
    offset = 0
    while batch := await queue.dead_letters(limit=500, offset=offset):
        for record in batch:
            facts[record.id] = JobFacts(state=record.state, error=record.error)
        offset += len(batch)
    return facts


async def observe(
    sim: ChatwootSimulator, queue: Queue, conversations: Iterable[int], gaps: list[str]
) -> Observation:
    """What the run left behind: every customer message of ``conversations`` (accepted or
    not, and its job), every reply, and the end state of every accepted message's job and
    of every dead letter."""
    accepted = accepted_messages(sim)
    observed = Observation(history_gaps=list(gaps))
    for conversation in conversations:
        observed.replies[conversation] = [
            Reply.from_message(conversation, m) for m in sim.replies(ACCOUNT, conversation)
        ]
        for message in sim.messages(ACCOUNT, conversation):
            if message.get("message_type") not in (0, "incoming"):
                continue
            message_id = int(message["id"])
            ok = accepted.get(message_id, False)
            job = await queue.find_by_message_id(f"cw-{message_id}") if ok else None
            observed.incoming.append(Incoming(message_id, conversation, ok, job))
            if job is not None:
                record = await queue.get_job(job)
                if record is not None:
                    observed.jobs[job] = JobFacts(
                        state=record.state,
                        error=record.error,
                        handed_off="handed_off" in record.hops or "skipped" in record.hops,
                    )
    for job, facts in (await _dead_letters(queue)).items():
        observed.jobs.setdefault(job, facts)
    return observed
