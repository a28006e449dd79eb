"""Tenant fairness on the real Redis: per-account caps inside the reservation
(lua/lib/fair_select.lua), work-conserving, without breaking lanes, deadlines or exactly-once.

Conversation keys are "<account>:<conversation>", as the intake writes them."""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter, defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice import Completion, EnqueueRequest, Job, Queue, Worker
from sluice.queue.fairness import FairnessCaps
from sluice.service.wiring import apply_fairness
from sluice.settings.config import load_settings

from .conftest import delete_queue_keys
from .procs import reap, spawn_worker
from .test_properties import Target, connect


async def stats(queue: Queue) -> dict[str, int]:
    raw = await queue.redis.hgetall(queue.keys.fair_stats)
    return {k.decode(): int(v) for k, v in raw.items()}


async def events(queue: Queue, kind: str) -> list[dict[str, str]]:
    out = []
    for _, fields in await queue.redis.xrange(queue.keys.events):
        entry = {k.decode(): v.decode() for k, v in fields.items()}
        if entry["type"] == kind:
            out.append(entry)
    return out


async def test_off_by_default_reservations_are_plain_earliest_deadline_first(queue: Queue) -> None:
    for key in ("1:a", "1:b", "1:c", "2:a"):
        await queue.enqueue(key, {})
    taken = await queue.reserve(4, worker_id="w")
    assert [j.key for j in taken.jobs] == ["1:a", "1:b", "1:c", "2:a"]
    snap = await queue.fairness()
    assert not snap.caps.on and await stats(queue) == {}
    assert {a.account: a.active for a in snap.accounts} == {"1": 3, "2": 1}


async def test_concurrency_cap_holds_while_another_account_waits(queue: Queue) -> None:
    await queue.set_fairness(FairnessCaps(concurrency=2))
    for n in range(6):
        await queue.enqueue(f"1:{n}", {})
    for key in ("2:a", "3:a", "2:b"):
        await queue.enqueue(key, {})
    taken = await queue.reserve(5, worker_id="w")
    # Account 1's lanes have the earliest deadlines, but it gets only its two.
    assert [j.key for j in taken.jobs] == ["1:0", "1:1", "2:a", "3:a", "2:b"]
    assert await queue.redis.zrange(queue.keys.fair_park("1"), 0, -1) == [
        b"1:2",
        b"1:3",
        b"1:4",
        b"1:5",
    ]
    assert await queue.redis.zcard(queue.keys.ready) == 0
    snap = await queue.fairness()
    assert [(a.account, a.active, a.held) for a in snap.accounts][:1] == [("1", 2, 4)]
    assert snap.capped_concurrency == 4 and snap.lent == 0
    # One event for the flood, not four: the reason says which cap and how full it is.
    capped = await events(queue, "capped")
    assert [(e["key"], e["info"]) for e in capped] == [("1:2", "1|concurrency 2/2")]

    # A turn of account 1 ends: its earliest held-back lane comes back, deadline kept.
    first = taken.jobs[0]
    _, again, _ = await queue.complete(
        [Completion(first.id, first.token, {})], reserve=3, worker_id="w"
    )
    assert [j.key for j in again.jobs] == ["1:2", "1:3", "1:4"]  # 1:2 in its share, the rest lent
    assert (await stats(queue))["l"] == 2


async def test_work_conserving_a_lone_account_uses_every_free_slot(queue: Queue) -> None:
    await queue.set_fairness(FairnessCaps(concurrency=2, rate=1))
    for n in range(8):
        await queue.enqueue(f"5:{n}", {})
    taken = await queue.reserve(8, worker_id="w")
    assert [j.key for j in taken.jobs] == [f"5:{n}" for n in range(8)]
    lent = await events(queue, "lent")
    assert len(lent) == 1 and lent[0]["info"].startswith("5|over its cap")
    assert (await queue.fairness()).lent >= 6


async def test_rate_cap_spaces_one_accounts_starts_while_others_wait(queue: Queue) -> None:
    await queue.set_fairness(FairnessCaps(rate=1))  # one start per second per account
    for n in range(3):
        await queue.enqueue(f"1:{n}", {})
    for n in range(3):
        await queue.enqueue(f"2:{n}", {})
    taken = await queue.reserve(2, worker_id="w")
    assert [j.key for j in taken.jobs] == ["1:0", "2:0"]
    snap = await queue.fairness()
    # 1:1 and 1:2 held back (account 1 started this second); the call ended at 2:0, so
    # 2:1 and 2:2 wait in `ready` until a call looks at them.
    assert snap.capped_rate == 2
    assert {a.account: a.held for a in snap.accounts} == {"1": 2, "2": 0}
    assert await queue.redis.zrange(queue.keys.ready, 0, -1) == [b"2:1", b"2:2"]


async def test_idle_slots_are_lent_to_the_account_with_the_fewest_turns_first(
    queue: Queue,
) -> None:
    """Lending is max-min fair: a held-back lane of a small account goes before the flood's,
    though the flood's backlog has the earlier deadlines (with earliest-deadline lending
    the small accounts, held back by a rate cap now and then, starved behind it: found by
    benchmarks/tenant_fairness.py with --rate-cap 10)."""
    await queue.set_fairness(FairnessCaps(rate=1))
    for n in range(5):
        await queue.enqueue(f"1:{n}", {})
    first = await queue.reserve(3, worker_id="w")  # 1:0 in its share, 1:1 and 1:2 lent
    assert [j.key for j in first.jobs] == ["1:0", "1:1", "1:2"]
    for key in ("2:0", "2:1"):
        await queue.enqueue(key, {})
    taken = await queue.reserve(3, worker_id="w")
    # 2:0 in its share; 2:1 held back by the rate cap, lent before the flood's 1:3
    assert [j.key for j in taken.jobs] == ["2:0", "2:1", "1:3"]


async def test_messages_of_a_conversation_stay_in_order_and_one_at_a_time(queue: Queue) -> None:
    await queue.set_fairness(FairnessCaps(concurrency=1))
    for n in range(4):
        await queue.enqueue("1:x", {"n": n})
        await queue.enqueue("1:y", {"n": n})
        await queue.enqueue("2:z", {"n": n})
    seen: dict[str, list[int]] = defaultdict(list)
    taken = await queue.reserve(3, worker_id="w")
    while taken.jobs:
        keys = [j.key for j in taken.jobs]
        assert len(keys) == len(set(keys)), f"two turns of one conversation: {keys}"
        for job in taken.jobs:
            seen[job.key].append(job.payload["n"])
        _, taken, _ = await queue.complete(
            [Completion(j.id, j.token, {}) for j in taken.jobs], reserve=3, worker_id="w"
        )
    assert seen == {k: [0, 1, 2, 3] for k in ("1:x", "1:y", "2:z")}
    assert (await queue.counts())["completed"] == 12


async def test_turning_fairness_off_returns_held_back_lanes_with_their_deadlines(
    queue: Queue,
) -> None:
    await queue.set_fairness(FairnessCaps(concurrency=1))
    for key in ("1:a", "1:b", "1:c", "2:a"):
        await queue.enqueue(key, {})
    taken = await queue.reserve(2, worker_id="w")
    assert [j.key for j in taken.jobs] == ["1:a", "2:a"]
    held = dict(await queue.redis.zrange(queue.keys.fair_park("1"), 0, -1, withscores=True))
    assert await queue.set_fairness(FairnessCaps()) == 2
    assert dict(await queue.redis.zrange(queue.keys.ready, 0, -1, withscores=True)) == held
    assert await queue.redis.zcard(queue.keys.fair_parked) == 0
    rest = await queue.reserve(5, worker_id="w")
    assert [j.key for j in rest.jobs] == ["1:b", "1:c"]


async def test_a_flood_beyond_one_calls_budget_is_never_lent_ahead_of_another_account(
    queue: Queue,
) -> None:
    """One call holds back at most FAIR_PARK_PER_CALL (512) lanes; while `ready` still has
    lanes it has not looked at, one may be another account's, so nothing is lent."""
    await queue.set_fairness(FairnessCaps(concurrency=1))
    await queue.enqueue_many([EnqueueRequest(key=f"1:{n}", payload={}) for n in range(600)])
    await queue.enqueue("2:a", {})
    first = await queue.reserve(3, worker_id="w")
    assert [j.key for j in first.jobs] == ["1:0"]  # 512 held back, the rest not yet looked at
    assert await queue.redis.llen(queue.keys.wake) >= 1  # a worker goes on at once
    second = await queue.reserve(3, worker_id="w")
    assert [j.key for j in second.jobs][:1] == ["2:a"]  # then lent: 1:1, 1:2
    assert [j.key for j in second.jobs][1:] == ["1:1", "1:2"]


async def test_a_cancelled_held_back_lane_never_runs_twice(queue: Queue) -> None:
    """A parked entry whose conversation was cancelled and written to again is stale: the
    lane came back to `ready` on its own, and must not be handed out a second time."""
    await queue.set_fairness(FairnessCaps(concurrency=1))
    await queue.enqueue("1:a", {})
    await queue.enqueue("1:b", {"n": 0})
    await queue.enqueue("2:a", {})
    first = await queue.reserve(2, worker_id="w")
    assert [j.key for j in first.jobs] == ["1:a", "2:a"]  # 1:b held back
    assert await queue.cancel("1:b") == 1
    await queue.enqueue("1:b", {"n": 1})  # ready again by itself, parked entry still there
    got = await queue.reserve(5, worker_id="w")
    assert [(j.key, j.payload["n"]) for j in got.jobs] == [("1:b", 1)]
    assert (await queue.reserve(5, worker_id="w")).jobs == []


async def test_expired_leases_release_the_accounts_count(queue: Queue) -> None:
    """A worker that died mid-turn ends its turns only by lease expiry: the account's count
    must not keep them (nothing decrements it; fair_heal checks `inflight`)."""
    await queue.set_fairness(FairnessCaps(concurrency=2))
    for key in ("1:a", "1:b"):
        await queue.enqueue(key, {})
    dead = await queue.reserve(2, worker_id="dead", lease_ms=50)
    assert len(dead.jobs) == 2
    await asyncio.sleep(0.1)  # the lease's duration is what is tested, not a wait for an event
    for key in ("1:c", "2:a"):
        await queue.enqueue(key, {})
    taken = await queue.reserve(4, worker_id="w")
    # Recovered (retried) lanes keep their earlier deadlines; account 1 has its 2 slots.
    assert sorted(j.key for j in taken.jobs) == ["1:a", "1:b", "1:c", "2:a"]
    assert (await stats(queue)).get("c:1", 0) <= 1  # only 1:c, held back behind its two
    assert await queue.redis.scard(queue.keys.fair_run("1")) == 3


# --- concurrent workers: the cap holds, nothing lost, order kept -------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.booleans()), min_size=1, max_size=50
    ),
    cap=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_cap_holds_under_concurrent_workers_exactly_once_in_order(
    redis_url: str, batch: list[tuple[int, int, bool]], cap: int, seed: int
) -> None:
    asyncio.run(fair_scenario(redis_url, batch, cap, seed))


async def fair_scenario(
    url: Target, batch: list[tuple[int, int, bool]], cap: int, seed: int, partitions: int = 1
) -> None:
    """Two workers (4 slots each) on one queue; messages (account, conversation, fails
    once). Every start of an account already at its cap must have been lent (the engine
    counts those): the handler sees fewer turns in flight than Redis does (a turn is
    reserved before it starts and acknowledged after it ends), so over-cap starts seen here
    are at most the engine's lent ones."""
    rng = random.Random(seed)
    client: Any = connect(url)
    name = f"fair-{rng.getrandbits(48):012x}"
    queue = Queue(name, redis=client, max_attempts=3, partitions=partitions)
    await queue.set_fairness(FairnessCaps(concurrency=cap))
    active: Counter[str] = Counter()
    running: set[str] = set()
    over_cap = 0
    violations: list[str] = []
    seen: dict[str, list[int]] = defaultdict(list)
    done: Counter[int] = Counter()
    all_done = asyncio.Event()

    async def handler(job: Job) -> None:
        nonlocal over_cap
        account = job.key.split(":")[0]
        if job.key in running:
            violations.append(f"two turns of {job.key}")
        if active[account] >= cap:
            over_cap += 1
        running.add(job.key)
        active[account] += 1
        try:
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
            if job.payload["fail"] and job.attempt == 1:
                raise RuntimeError("planned failure")
            seen[job.key].append(job.payload["seq"])
            done[job.payload["seq"]] += 1
            if len(done) == len(batch):
                all_done.set()
        finally:
            running.discard(job.key)
            active[account] -= 1

    workers = [
        Worker(
            queue,
            handler,
            concurrency=4,
            retry_base_ms=1,
            retry_max_ms=4,
            handle_signals=False,
            idle_poll_s=0.05,
        )
        for _ in range(2)
    ]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        for seq, (account, conv, fail) in enumerate(batch):
            await queue.enqueue(f"{account}:{conv}", {"seq": seq, "fail": fail})
        await asyncio.wait_for(all_done.wait(), 30)
    finally:
        for w in workers:
            await w.stop()
        await asyncio.gather(*tasks)
    try:
        assert violations == []
        assert all(n == 1 for n in done.values()) and len(done) == len(batch)
        for key, seqs in seen.items():
            assert seqs == sorted(seqs), f"order broken in {key}: {seqs}"
        counts = await queue.counts()
        assert (counts["waiting"], counts["active"], counts["delayed"]) == (0, 0, 0)
        snap = await queue.fairness()
        assert over_cap <= snap.lent  # per partition on a partitioned queue: at least as many
        assert sum(a.held for a in [*snap.accounts, snap.other]) == 0  # nothing left behind
    finally:
        await delete_queue_keys(client, name)
        if partitions > 1:
            await delete_queue_keys(client, f"{name}[#~]*")
        await client.aclose()


# --- a real worker process killed mid-turn ---------------------------------------------------


async def test_a_killed_workers_turns_do_not_count_against_its_account(
    redis_url: str, redis_client: aioredis.Redis, queue: Queue
) -> None:
    """SIGKILL a worker holding both of account 7's turns (cap 2). After its leases expire,
    another account competing for slots must not make account 7 wait: its count comes from
    the lanes really in flight, not from turns the dead worker never acknowledged."""
    name = queue.name
    await queue.set_fairness(FairnessCaps(concurrency=2))
    ids = [await queue.enqueue(key, {}) for key in ("7:a", "7:b")]
    first = spawn_worker(redis_url, name, "hang-first", "--lease", "1500")
    second = None
    try:
        for _ in ids:
            assert await redis_client.blpop([f"{name}:started"], timeout=20) is not None
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        assert await redis_client.scard(queue.keys.fair_run("7")) == 2  # never decremented
        for key in ("8:a", "8:b", "8:c"):
            await queue.enqueue(key, {})
        second = spawn_worker(redis_url, name, "hang-first", "--lease", "1500")
        finished = set()
        while len(finished) < 2:  # 7:a and 7:b on their second attempt, once recovered
            got = await redis_client.blpop([f"{name}:done"], timeout=20)
            assert got is not None
            finished.add(got[1].decode().split("|")[1])
        assert finished == set(ids)
        # Had the dead worker's turns stayed counted, 7:a and 7:b would have been held back
        # behind account 8 (a 'c:7' decision); they went in their own share instead.
        assert (await stats(queue)).get("c:7", 0) == 0
    finally:
        reap(first)
        if second is not None:
            reap(second)
        await redis_client.delete(f"{name}:started", f"{name}:done", f"{name}:ready")


# --- per inbox --------------------------------------------------------------------------------


async def test_inbox_cap_holds_back_one_inbox_of_an_account(queue: Queue) -> None:
    """Inbox 10 of account 1 floods; inbox 11 of the same account and account 2 are not held
    back behind it (the inbox id travels in the payload, as the intake's CustomerMessage)."""
    await queue.set_fairness(FairnessCaps(inbox_concurrency=1))
    for n in range(3):
        await queue.enqueue(f"1:{n}", {"inbox_id": 10})
    await queue.enqueue("1:9", {"inbox_id": 11})
    await queue.enqueue("2:0", {"inbox_id": 20})
    await queue.enqueue("3:0", {"no": "inbox"})  # no inbox: capped by account only (none)
    taken = await queue.reserve(4, worker_id="w")
    assert [j.key for j in taken.jobs] == ["1:0", "1:9", "2:0", "3:0"]
    assert await queue.redis.zrange(queue.keys.fair_park("1/10"), 0, -1) == [b"1:1", b"1:2"]
    snap = await queue.fairness()
    rows = {a.account: (a.active, a.held) for a in snap.accounts}
    assert rows["1/10"] == (1, 2) and rows["1"] == (2, 0)
    # With nothing else ready, the inbox is lent the idle slots.
    lent = await queue.reserve(4, worker_id="w")
    assert [j.key for j in lent.jobs] == ["1:1", "1:2"]


async def test_account_and_inbox_caps_together(queue: Queue) -> None:
    await queue.set_fairness(FairnessCaps(concurrency=2, inbox_concurrency=1))
    for n in range(2):
        await queue.enqueue(f"1:a{n}", {"inbox_id": 10})
        await queue.enqueue(f"1:b{n}", {"inbox_id": 11})
        await queue.enqueue(f"1:c{n}", {"inbox_id": 12})
    await queue.enqueue("2:x", {"inbox_id": 20})
    taken = await queue.reserve(3, worker_id="w")
    # Account 1: two turns at most, one per inbox; then account 2.
    assert [j.key for j in taken.jobs] == ["1:a0", "1:b0", "2:x"]
    assert await queue.set_fairness(FairnessCaps()) == 4  # every held-back lane returns


# --- the switch: workers apply the configuration ----------------------------------------------


async def test_a_starting_worker_applies_the_configured_caps_and_zeros_turn_them_off(
    queue: Queue,
) -> None:
    env = {"SLUICE_ACCOUNT_CONCURRENCY": "3", "SLUICE_INBOX_RATE": "2.5"}
    await apply_fairness(SimpleNamespace(settings=load_settings(env), queue=queue))  # type: ignore[arg-type]
    assert (await queue.fairness()).caps == FairnessCaps(concurrency=3, inbox_rate=2.5)
    configs = [(e["key"], e["info"]) for e in await events(queue, "config")]
    assert configs == [("acct_concurrency", "3"), ("inbox_rate", "2.5")]
    await apply_fairness(SimpleNamespace(settings=load_settings({}), queue=queue))  # type: ignore[arg-type]
    assert not (await queue.fairness()).caps.on
    assert await queue.redis.hmget(queue.keys.meta, ["acct_concurrency", "inbox_rate"]) == [
        None,
        None,
    ]


def test_a_bad_cap_is_refused_with_the_variables_name() -> None:
    with pytest.raises(ValueError, match="SLUICE_ACCOUNT_RATE"):
        load_settings({"SLUICE_ACCOUNT_RATE": "-1"})
    with pytest.raises(ValueError, match="concurrency"):
        FairnessCaps(concurrency=-1)


async def test_a_huge_run_set_is_healed_without_losing_the_lanes_taken(queue: Queue) -> None:
    """Under a start-rate cap alone nothing prunes an account's run set until an idle slot
    is lent (fair_heal runs at a concurrency cap or when lending), so it holds every
    conversation the account started within the hour: more than Lua's unpack takes (about
    8000). Healing it in one HMGET failed the script after step 2 had already taken lanes
    out of `ready`: those lanes were in neither `ready` nor `inflight`, never answered.
    The members are written directly (an hour of a busy account's starts, each ended)."""
    await queue.set_fairness(FairnessCaps(rate=1))
    ended = [f"1:old{n}" for n in range(9000)]
    for at in range(0, len(ended), 1000):
        await queue.redis.sadd(queue.keys.fair_run("1"), *ended[at : at + 1000])
    for key in ("1:a", "1:b", "2:a"):
        await queue.enqueue(key, {})
    taken = await queue.reserve(3, worker_id="w")
    # 1:a and 2:a in their shares, 1:b held back by the rate cap, then lent the idle slot
    assert sorted(j.key for j in taken.jobs) == ["1:a", "1:b", "2:a"]
    assert await queue.redis.scard(queue.keys.fair_run("1")) == 2  # the ended ones healed away
