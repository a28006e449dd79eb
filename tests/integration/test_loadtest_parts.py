"""The load test's own parts, each against the real simulator over loopback HTTP: the reply
stream customers in another process rely on, the cause recorded for each failed webhook
delivery, the split of customers over processes, the Chatwoot it sizes, and the per-process
CPU reading."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import AsyncIterator

import pytest

from sluice.loadtest import LoadConfig
from sluice.loadtest.cpu import tree_cpu_seconds
from sluice.loadtest.parts import merge_tallies, shares
from sluice.loadtest.remote import RemoteSimulator
from sluice.simulator import ChatwootSimulator, SimulatorConfig

TOKEN = "loadtest-parts-token"
ACCOUNT = 7


URLS: dict[int, str] = {}


@pytest.fixture
async def sim() -> AsyncIterator[ChatwootSimulator]:
    simulator = ChatwootSimulator(SimulatorConfig(api_token=TOKEN))
    URLS[id(simulator)] = await simulator.serve()
    try:
        yield simulator
    finally:
        await simulator.aclose()
        del URLS[id(simulator)]


def _url(sim: ChatwootSimulator) -> str:
    return URLS[id(sim)]


async def test_remote_customer_gets_each_reply_through_the_stream(sim: ChatwootSimulator) -> None:
    async with RemoteSimulator(_url(sim), TOKEN) as remote:
        first = await remote.create_conversation(ACCOUNT)
        second = await remote.create_conversation(ACCOUNT)
        asked = await remote.customer_message(ACCOUNT, first, "Where is my order?")
        other = await remote.customer_message(ACCOUNT, second, "Do you ship to Norway?")
        waiting = asyncio.create_task(
            remote.wait_for_reply(ACCOUNT, first, after_message_id=int(asked["id"]), timeout=10)
        )
        # A reply in another conversation must not wake this customer.
        await sim.agent_message(ACCOUNT, second, "Yes, we do.")
        reply = await sim.agent_message(ACCOUNT, first, "It ships today.")
        got = await waiting
        assert got["id"] == reply["id"] and got["content"] == "It ships today."
        # A reply that reached the process before the customer asked is found too.
        early = await remote.wait_for_reply(
            ACCOUNT, second, after_message_id=int(other["id"]), timeout=10
        )
        assert early["content"] == "Yes, we do."
        with pytest.raises(TimeoutError):
            await remote.wait_for_reply(
                ACCOUNT, first, after_message_id=int(got["id"]), timeout=0.2
            )


async def test_stream_refuses_a_wrong_token(sim: ChatwootSimulator) -> None:
    with pytest.raises(Exception, match="401"):
        async with RemoteSimulator(_url(sim), "not-the-token"):
            pass


async def test_each_failed_delivery_says_why(sim: ChatwootSimulator) -> None:
    conversation = await sim.create_conversation(ACCOUNT)
    sim.config.webhook_url = f"{_url(sim)}/no/such/receiver"  # the simulator answers 404
    await sim.customer_message(ACCOUNT, conversation, "one")
    sim.config.webhook_url = "http://127.0.0.1:9/webhooks"  # discard port: refused
    await sim.customer_message(ACCOUNT, conversation, "two")
    webhooks = sim.stats()["webhooks"]
    assert webhooks["failed_by_reason"].get("HTTP 404", 0) >= 1
    assert webhooks["failed_by_reason"].get("ConnectError", 0) >= 1
    assert sum(webhooks["failed_by_reason"].values()) == webhooks["failed"]
    assert webhooks["request_ms"]["p50"] is not None


def test_customers_split_over_processes_keep_the_offered_load() -> None:
    cfg = LoadConfig(conversations=1000, rate=100.0, seed=3)
    parts = shares(cfg, 3)
    assert [p.conversations for p in parts] == [334, 333, 333]
    assert sum(p.rate for p in parts) == pytest.approx(100.0)
    assert len({p.seed for p in parts}) == 3
    # Never more processes than customers.
    assert len(shares(LoadConfig(conversations=2), 5)) == 2


def test_merged_tallies_rebuild_the_sla_distribution() -> None:
    one = {"sent": 3, "missing": 1, "turns": 2, "bursts": 1, "errors": 0, "samples": [100.0, 200.0]}
    two = {
        "sent": 2,
        "missing": 0,
        "turns": 2,
        "bursts": 0,
        "errors": 1,
        "samples": [9_000.0, 11_000.0],
    }
    tally = merge_tallies([one, two])
    assert (tally.sent, tally.replied, tally.missing, tally.errors) == (5, 4, 1, 1)
    assert tally.within(10_000) == pytest.approx(0.75)


def test_chatwoot_is_sized_for_the_offered_load_unless_told() -> None:
    assert LoadConfig(rate=5).chatwoot_sizing() == (3000, 10)  # Chatwoot's own defaults
    assert LoadConfig(rate=100).chatwoot_sizing() == (36_000, 50)
    told = LoadConfig(rate=100, chatwoot_rate_limit_per_min=3000, chatwoot_sidekiq_threads=10)
    assert told.chatwoot_sizing() == (3000, 10)


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_tree_cpu_counts_live_children() -> None:
    ctx = multiprocessing.get_context("spawn")
    before = tree_cpu_seconds(os.getpid())
    assert before is not None
    child = ctx.Process(target=_burn, args=(60.0,))
    child.start()
    try:
        assert child.pid is not None
        deadline = time.monotonic() + 30
        while (tree_cpu_seconds(child.pid) or 0.0) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling another process's counters: no event to await
        own = tree_cpu_seconds(child.pid) or 0.0
        whole = tree_cpu_seconds(os.getpid()) or 0.0
        assert own >= 0.5
        assert whole >= before + own - 0.05  # the parent's tree includes the child
    finally:
        child.kill()
        child.join()
