"""Every Redis key Sluice uses, named in one place.

Every key of a queue starts with ``sluice:{name}:``; the braces are a Redis Cluster hash
tag, so a whole queue lives in one slot and every Lua script may touch all of its keys.
The families, each spelled only here on the Python side:

- the engine: the fixed keys (passed to every script in one vector) and per-job, per-lane,
  per-request keys (the Lua scripts derive these from the prefix; see queue/lua/);
- workers: their heartbeat records;
- monitoring: the 10-second and one-minute buckets, the all-time counters;
- conversations: what the service remembers of each Chatwoot conversation;
- brokers: assignments, loads, the round-robin cursor, circuit breakers;
- alerts: their state, history, commands and the evaluator's leader lease;
- intake: delivery ids already seen, replayed signatures, refused payloads;
- API processes: each host's API processes and their own readings (pool, spool);
- dashboard: sign-in sessions and failed sign-ins.

Nothing else builds a key from the prefix, so renaming one is a change to this file (and,
for keys that Lua writes, to the script that writes it).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

#: Conversation keys (and, through them, a conversation's broker assignment) expire after a
#: week of silence.
CONVERSATION_TTL_S = 7 * 86_400

_VALID_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")

FIXED_KEYS = (
    "ready",
    "delayed",
    "inflight",
    "active",
    "waiting",
    "dead",
    "completed",
    "meta",
    "rate",
    "wake",
    "events",
    "seq",
    "control",
)


def partition_of(conversation: str, partitions: int) -> int:
    """The partition a conversation's lane lives on: CRC-32 of its key (UTF-8) modulo the
    number of partitions (docs/partitions.md). Stable across processes, hosts and Python
    versions (unlike ``hash``)."""
    if partitions <= 1:
        return 0
    return zlib.crc32(conversation.encode()) % partitions


def partition_tag(name: str, partition: int) -> str:
    """The plain hash tag of a partition: ``name`` for partition 0, ``name#p`` for p >= 1.
    Partition 0 always has it; partition p >= 1 has it unless the queue's layout recorded
    another when the partition was created (:func:`salted_tag`; docs/partitions.md), and
    every layout written before tags were recorded uses it."""
    return name if partition == 0 else f"{name}#{partition}"


def salted_tag(name: str, partition: int, salt: int) -> str:
    """A tag for partition p >= 1 that lands in another slot than the plain one:
    ``name~k#p`` (k >= 1). '~' is not allowed in queue names, so no other queue's tag can
    equal it; the tag still ends in ``#p``, which is how enqueue.lua names the partition in
    its job ids ("<p>_<n>"). Salt 0 is the plain tag."""
    return partition_tag(name, partition) if salt == 0 else f"{name}~{salt}#{partition}"


def split_job_id(job_id: str) -> tuple[int, int]:
    """(partition, sequence number) of a job id: partition 0's ids are plain numbers (every
    unpartitioned queue's), partition p >= 1's are "<p>_<n>" (enqueue.lua). Ordering by this
    pair orders one partition's jobs as they were enqueued. Raises ValueError otherwise."""
    part, sep, seq = job_id.partition("_")
    if not sep:
        return 0, int(job_id)
    return int(part), int(seq)


@dataclass(frozen=True)
class QueueKeys:
    """Names of one queue's keys, in the order the Lua scripts expect them.

    ``partition`` 0 (the only one of an unpartitioned queue) is ``sluice:{name}:``, exactly
    the layout from before partitions; partition p >= 1 is ``sluice:{<tag>}:``, its own
    hash tag, so a cluster may put it on another shard ('#' is not allowed in queue names,
    so no queue's keys collide with another's partition). The tag of p >= 1 is the one the
    queue's layout recorded when the partition was created (``name#p`` or ``name~k#p``,
    chosen so that partitions land on different masters: :mod:`sluice.queue.layout`);
    ``tag=None`` means the plain ``name#p``. Only a layout knows a partition's tag, so
    partition keys come from :meth:`sluice.queue.layout.Layout.keys` (or an engine of a
    queue that read its layout), never from a tag guessed here. Keys that belong to the
    whole queue rather than one partition (the layout, the global limiter, the worker
    registry, the service's conversations, brokers, alerts, ...) are those of partition 0,
    or of a tag of their own (:attr:`limiter_prefix`)."""

    name: str
    partition: int = 0
    tag: str | None = None
    prefix: str = field(init=False)
    vector: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not _VALID_NAME.match(self.name):
            raise ValueError(
                f"queue name {self.name!r} must be 1-100 characters of letters, digits, "
                "'_', '.', ':' or '-'"
            )
        if self.partition < 0:
            raise ValueError(f"partition must not be negative, got {self.partition}")
        plain = partition_tag(self.name, self.partition)
        tag = self.tag or plain
        if tag != plain and (
            self.partition == 0
            or not re.fullmatch(rf"{re.escape(self.name)}~[1-9][0-9]*#{self.partition}", tag)
        ):
            # A tag of another queue or partition would mix their keys; partition 0's is fixed.
            raise ValueError(
                f"{tag!r} is not a hash tag of partition {self.partition} of {self.name!r}"
            )
        object.__setattr__(self, "tag", tag)
        prefix = f"sluice:{{{tag}}}:"
        object.__setattr__(self, "prefix", prefix)
        object.__setattr__(self, "vector", tuple(prefix + k for k in FIXED_KEYS))

    def __getattr__(self, item: str) -> str:
        # Only reached for names that are not real attributes: the fixed key names.
        if item in FIXED_KEYS:
            return self.prefix + item
        raise AttributeError(item)

    def part(self, partition: int, tag: str | None = None) -> QueueKeys:
        """The keys of another partition of the same queue, under ``tag`` (the one its layout
        recorded; None: the plain tag). Prefer :meth:`sluice.queue.layout.Layout.keys`, which
        knows the tag."""
        return QueueKeys(self.name, partition, tag)

    @property
    def layout(self) -> str:
        """The partition layout (hash: ``partitions``, ``previous`` during a resize,
        ``epoch``, ``highest``, ``tag:<p>`` the hash tag of partition p >= 1); kept on
        partition 0 (docs/partitions.md)."""
        return f"sluice:{{{self.name}}}:layout"

    @property
    def limiter_prefix(self) -> str:
        """The global rate limiter of a partitioned queue: a hash tag of its own, so its
        one script call touches one slot (``rate`` zset of start grants, ``meta`` hash with
        the live ``rate_limit``)."""
        return f"sluice:{{{self.name}#rate}}:"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def payload(self, job_id: str) -> str:
        return f"{self.prefix}payload:{job_id}"

    def lane(self, conversation: str) -> str:
        return f"{self.prefix}lane:{conversation}"

    def dedupe(self, message_id: str) -> str:
        return f"{self.prefix}dedupe:{message_id}"

    def request(self, request_id: str) -> str:
        """Where a script keeps the answer of a call (see lua/lib/request_key.lua)."""
        return f"{self.prefix}req:{request_id}"

    def stats(self, unix_second: int) -> str:
        return f"{self.prefix}stats:{unix_second}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}"

    @property
    def workers(self) -> str:
        return self.prefix + "workers"

    # Tenant fairness (queue/fairness.py; lua/lib/fair_keys.lua writes them, docs/fairness.md).

    @property
    def fair_parked(self) -> str:
        """Accounts with lanes held back at a cap -> their earliest deadline (ZSET)."""
        return self.prefix + "fair:parked"

    @property
    def fair_stats(self) -> str:
        """Fairness decisions: ``<kind>`` and ``<kind>:<account>`` -> count, kind ``c``
        (held back at the concurrency cap), ``r`` (at the rate cap), ``l`` (lent an idle
        slot over its cap)."""
        return self.prefix + "fair:stats"

    def fair_park(self, account: str) -> str:
        """One account's lanes held back at a cap: conversation -> deadline (ZSET)."""
        return f"{self.prefix}fair:park:{account}"

    def fair_run(self, account: str) -> str:
        """One account's conversations reserved (SET; a superset of its lanes in flight)."""
        return f"{self.prefix}fair:run:{account}"

    def fair_tat(self, account: str) -> str:
        """One account's start-rate state (GCRA theoretical arrival time, ms)."""
        return f"{self.prefix}fair:tat:{account}"

    # Monitoring buckets: the Lua scripts write them (lua/lib/flush_monitor.lua, rollup.lua) and
    # sluice.monitor reads them. Spelled only here on the Python side, so a reader and the
    # writers cannot drift apart on a key name.

    def mon_10s(self, index: int) -> str:
        """One 10-second bucket of monitoring counters; ``index`` is unix seconds // 10."""
        return f"{self.prefix}mon:10s:{index}"

    def mon_1m(self, index: int) -> str:
        """The roll-up of one finished minute; ``index`` is unix seconds // 60."""
        return f"{self.prefix}mon:1m:{index}"

    @property
    def mon_total(self) -> str:
        """All-time counters and fixed histogram buckets (what /metrics exports)."""
        return self.prefix + "mon:total"

    @property
    def mon_rolled_until(self) -> str:
        """The last minute already rolled up into ``mon:1m:``, so roll-ups are idempotent."""
        return self.prefix + "mon:rolled_until"

    # Conversations (sluice.service.conversations): a hash per conversation and a list of
    # its recent turns; both expire after a week of silence.

    @property
    def conversations(self) -> str:
        """The prefix of every conversation's keys (SCAN patterns, the broker's expiry)."""
        return self.prefix + "conv:"

    def conversation(self, key: str) -> str:
        return f"{self.prefix}conv:{key}"

    def conversation_history(self, key: str) -> str:
        return f"{self.prefix}conv:{key}:history"

    # Brokers (sluice.broker.assignment; the Lua in broker/lua/ takes them as KEYS).

    @property
    def broker_assignments(self) -> str:
        return self.prefix + "broker:assignments"

    @property
    def broker_loads(self) -> str:
        return self.prefix + "broker:loads"

    @property
    def broker_round_robin(self) -> str:
        return self.prefix + "broker:rr"

    @property
    def broker_seen(self) -> str:
        return self.prefix + "broker:seen"

    @property
    def broker_adopt(self) -> str:
        return self.prefix + "broker:adopt"

    # Adaptive concurrency (sluice.control).

    @property
    def adaptive(self) -> str:
        """The concurrency controller's hash: ``target`` (the global slot count every
        worker takes its share of), the law's state, ``reason`` and decision counters."""
        return self.prefix + "adaptive"

    @property
    def adaptive_leader(self) -> str:
        """The lease that makes one process the queue's concurrency controller."""
        return self.prefix + "adaptive:leader"

    @property
    def broker_stats(self) -> str:
        """Cumulative broker-call counters every worker adds to at each heartbeat:
        ``calls``, ``errors``, ``throttled`` (429s), ``latency_ms`` (sum)."""
        return self.prefix + "broker:stats"

    # Circuit breakers (sluice.broker.breaker; the Lua in broker/lua/breaker_*.lua takes
    # them as KEYS): one hash per broker (state, cool-off end, reason, counters) and the
    # set of brokers that have one, so a reader (dashboard, /metrics) needs no broker list.

    def breaker(self, broker: str) -> str:
        return f"{self.prefix}breaker:{broker}"

    @property
    def breakers(self) -> str:
        return self.prefix + "breakers"

    # Alerts (sluice.alerts.store).

    @property
    def alerts_state(self) -> str:
        return self.prefix + "alerts:state"

    @property
    def alerts_history(self) -> str:
        return self.prefix + "alerts:history"

    @property
    def alerts_commands(self) -> str:
        return self.prefix + "alerts:commands"

    @property
    def alerts_leader(self) -> str:
        return self.prefix + "alerts:leader"

    # Predictive scaling (sluice.scaling.service).

    @property
    def scaling_state(self) -> str:
        """The last forecast and recommendation, as JSON, written by the monitoring leader
        every finished minute (expires when no leader writes it any more)."""
        return self.prefix + "scaling:state"

    # Intake (sluice.service.intake, sluice.chatwoot.replay).

    def delivery(self, delivery_id: str) -> str:
        """A Chatwoot ``X-Chatwoot-Delivery`` id already taken (its retries are dropped)."""
        return f"{self.prefix}delivery:{delivery_id}"

    @property
    def replays(self) -> str:
        """The prefix of signed requests already used (timestamp and signature digest)."""
        return self.prefix + "replay:"

    @property
    def intake_rejected(self) -> str:
        """The last refused payloads, for an operator to look at."""
        return self.prefix + "intake:rejected"

    @property
    def deadline_sources(self) -> str:
        """Hash: deadline source -> messages it decided (sluice.deadlines; /metrics)."""
        return self.prefix + "intake:deadline_sources"

    def api_processes(self, host: str) -> str:
        """The API processes of one host and their own readings (pool, spool), so a scrape
        of any of them shows all of them (sluice.api.process_metrics)."""
        return f"{self.prefix}api:processes:{host}"

    # Dashboard (sluice.api.dashboard).

    def dashboard_session(self, digest: str) -> str:
        return f"{self.prefix}dash:session:{digest}"

    def dashboard_login_failures(self, client: str) -> str:
        return f"{self.prefix}dash:loginfail:{client}"
