"""Tenant fairness: per-account (and per-inbox) caps on turns in flight and starts per second.

The caps are enforced inside every reservation (``lua/lib/fair_select.lua``); this module
sets them (``lua/fairness.lua``) and reads what they did, for ``/metrics`` and the
dashboard. The rule, in the manner of Inngest's concurrency and throttle keys (one limit per
value of a key; the key here is the account a conversation belongs to), but
work-conserving: an account at a cap only waits while another account's lane can take the
slot; with nobody else waiting it gets the idle slots ("lent"). docs/fairness.md has the
reasons and the benchmark.

An account is the part of a conversation key before its first ``:`` (the intake's keys are
``"<account>:<conversation>"``); a key without one is never capped. An inbox is named
``"<account>/<inbox>"`` from the ``inbox_id`` of the payload (the intake's carries it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sluice.keys import QueueKeys
from sluice.queue.scripts import Scripts
from sluice.queue.types import as_text
from sluice.redis.cluster import RedisClient

#: Accounts named one by one in /metrics and on the dashboard (the busiest); the rest are
#: summed, so a flood of account ids cannot flood Prometheus with series.
TOP_ACCOUNTS = 10


@dataclass(frozen=True)
class FairnessCaps:
    """Per-account and per-inbox caps; 0 turns a cap off, all 0 = fairness off (the
    default)."""

    concurrency: int = 0  # turns of one account reserved at once
    rate: float = 0.0  # starts of one account per second
    inbox_concurrency: int = 0  # turns of one inbox reserved at once
    inbox_rate: float = 0.0  # starts of one inbox per second

    def __post_init__(self) -> None:
        for name in ("concurrency", "inbox_concurrency"):
            value = getattr(self, name)
            if value < 0 or int(value) != value:
                raise ValueError(f"{name} must be a whole number >= 0, got {value}")
        for name in ("rate", "inbox_rate"):
            value = getattr(self, name)
            if not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be >= 0 starts/s, got {value}")

    @property
    def on(self) -> bool:
        return any((self.concurrency, self.rate, self.inbox_concurrency, self.inbox_rate))


@dataclass
class AccountLoad:
    """One account as fairness sees it."""

    account: str
    active: int = 0  # turns in flight (reserved, running)
    held: int = 0  # lanes held back at a cap right now
    capped: int = 0  # lanes held back, all time ("c" + "r" decisions)
    lent: int = 0  # idle slots lent over its cap, all time

    def add(self, other: AccountLoad) -> None:
        """Count ``other``'s load in this one (the "other" row, partitions merged)."""
        self.active += other.active
        self.held += other.held
        self.capped += other.capped
        self.lent += other.lent


@dataclass
class FairnessSnapshot:
    """What fairness is doing on one queue: its caps, the busiest accounts, the totals."""

    caps: FairnessCaps
    accounts: list[AccountLoad] = field(default_factory=list)  # at most TOP_ACCOUNTS
    other: AccountLoad = field(default_factory=lambda: AccountLoad("other"))
    capped_concurrency: int = 0
    capped_rate: int = 0
    lent: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.caps.on,
            "account_concurrency": self.caps.concurrency,
            "account_rate": self.caps.rate,
            "inbox_concurrency": self.caps.inbox_concurrency,
            "inbox_rate": self.caps.inbox_rate,
            "capped_concurrency": self.capped_concurrency,
            "capped_rate": self.capped_rate,
            "lent": self.lent,
            "accounts": [a.__dict__ for a in self.accounts],
            "other": self.other.__dict__,
        }


def account_of(conversation: str) -> str | None:
    """The account of a conversation key, as lua/lib/fair_account.lua reads it."""
    head, sep, _ = conversation.partition(":")
    return head if sep and head else None


async def set_caps(
    redis: RedisClient, scripts: Scripts, keys: QueueKeys, caps: FairnessCaps
) -> int:
    """Store the caps in the queue's meta (every reservation reads them); both 0 turns
    fairness off and returns every held-back lane to ``ready``. Returns how many went back."""
    args: list[str | int] = [
        keys.prefix,
        int(caps.concurrency),
        f"{caps.rate:g}",
        int(caps.inbox_concurrency),
        f"{caps.inbox_rate:g}",
    ]
    return int(await scripts.fairness([keys.meta], args))


_CAP_FIELDS = ["acct_concurrency", "acct_rate", "inbox_concurrency", "inbox_rate"]


def _caps(raw: list[Any]) -> FairnessCaps:
    conc, rate, inbox_conc, inbox_rate = raw
    return FairnessCaps(
        concurrency=int(conc) if conc else 0,
        rate=float(rate) if rate else 0.0,
        inbox_concurrency=int(inbox_conc) if inbox_conc else 0,
        inbox_rate=float(inbox_rate) if inbox_rate else 0.0,
    )


async def read_caps(redis: RedisClient, keys: QueueKeys) -> FairnessCaps:
    """The caps stored in one queue's (or partition's) meta."""
    return _caps(await redis.hmget(keys.meta, _CAP_FIELDS))


async def held_lanes(redis: RedisClient, keys: QueueKeys) -> list[str]:
    """The conversations held back at a cap (out of ``ready``, in their accounts' parks):
    a resize must wait for them as for ready lanes (:func:`sluice.queue.layout.misplaced`)."""
    accounts = [as_text(a) for a in await redis.zrange(keys.fair_parked, 0, -1)]
    if not accounts:
        return []
    pipe = redis.pipeline(transaction=False)
    for account in accounts:
        pipe.zrange(keys.fair_park(account), 0, -1)
    return [as_text(k) for lanes in await pipe.execute() for k in lanes]


async def snapshot(
    redis: RedisClient, keys: QueueKeys, top: int = TOP_ACCOUNTS
) -> FairnessSnapshot:
    """Caps, the busiest accounts and inboxes (by turns in flight, then held-back lanes) and
    totals. An account's turns in flight are counted from ``inflight`` itself (its size is
    bounded by the slots), not from the fairness counters, so the figure is exact whatever
    fairness did; an inbox's ("<account>/<inbox>", only those fairness has seen at a cap)
    are the members of its run set that are in ``inflight``."""
    pipe = redis.pipeline(transaction=False)
    pipe.hmget(keys.meta, _CAP_FIELDS)
    pipe.hkeys(keys.inflight)
    pipe.zrange(keys.fair_parked, 0, -1)
    pipe.hgetall(keys.fair_stats)
    raw_caps, inflight, parked, stats = await pipe.execute()
    caps = _caps(raw_caps)
    running = {as_text(k) for k in inflight}
    active = Counter(a for a in (account_of(k) for k in running) if a)
    parked_groups = [as_text(a) for a in parked]
    counts = {as_text(k): int(v) for k, v in stats.items()}
    inboxes = sorted(
        {g for g in parked_groups if "/" in g}
        | {name.partition(":")[2] for name in counts if "/" in name}
    )
    held: dict[str, int] = {}
    if parked_groups or inboxes:
        pipe = redis.pipeline(transaction=False)
        for group in parked_groups:
            pipe.zcard(keys.fair_park(group))
        for group in inboxes:
            pipe.smembers(keys.fair_run(group))
        got = await pipe.execute()
        held = dict(zip(parked_groups, [int(n) for n in got[: len(parked_groups)]], strict=True))
        for group, members in zip(inboxes, got[len(parked_groups) :], strict=True):
            active[group] = sum(1 for m in members if as_text(m) in running)
    loads: dict[str, AccountLoad] = {}

    def load(account: str) -> AccountLoad:
        return loads.setdefault(account, AccountLoad(account))

    for account, n in active.items():
        if n:
            load(account).active = n
    for account, n in held.items():
        load(account).held = n
    for name, n in counts.items():
        kind, sep, account = name.partition(":")
        if not sep:
            continue
        if kind in ("c", "r"):
            load(account).capped += n
        elif kind == "l":
            load(account).lent += n
    ranked = sorted(loads.values(), key=lambda a: (-a.active, -a.held, -a.capped, a.account))
    other = AccountLoad("other")
    for a in ranked[top:]:
        other.add(a)
    return FairnessSnapshot(
        caps=caps,
        accounts=ranked[:top],
        other=other,
        capped_concurrency=counts.get("c", 0),
        capped_rate=counts.get("r", 0),
        lent=counts.get("l", 0),
    )


def merge(snapshots: list[FairnessSnapshot], top: int = TOP_ACCOUNTS) -> FairnessSnapshot:
    """The snapshots of a partitioned queue's partitions as one (caps are partition 0's)."""
    loads: dict[str, AccountLoad] = {}
    other = AccountLoad("other")
    for snap in snapshots:
        for a in snap.accounts:
            total = loads.setdefault(a.account, AccountLoad(a.account))
            total.add(a)
        other.add(snap.other)
    ranked = sorted(loads.values(), key=lambda a: (-a.active, -a.held, -a.capped, a.account))
    for a in ranked[top:]:
        other.add(a)
    return FairnessSnapshot(
        caps=snapshots[0].caps if snapshots else FairnessCaps(),
        accounts=ranked[:top],
        other=other,
        capped_concurrency=sum(s.capped_concurrency for s in snapshots),
        capped_rate=sum(s.capped_rate for s in snapshots),
        lent=sum(s.lent for s in snapshots),
    )
