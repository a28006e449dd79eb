"""`sluice loadtest` and the demo's customers: many concurrent conversations against the
Chatwoot simulator, measured as the customer sees it.

Every customer opens a conversation, writes (sometimes a burst of lines), waits for the
reply, thinks, and writes again; all customers together keep to the offered rate. The SLA
of a line is the time from its creation in (fake) Chatwoot to the first reply the customer
receives after it — webhook, intake, queue, broker, Chatwoot API and all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from sluice.api.app import create_app
from sluice.api.server import ApiServer
from sluice.monitor.histogram import Histogram
from sluice.monitor.windows import WindowReader
from sluice.service.wiring import Runtime, build_pipeline, build_worker, open_runtime
from sluice.settings.config import Settings, load_settings
from sluice.simulator import ChatwootSimulator, Mode, SimulatorConfig, TokenKind, profile_for
from sluice.simulator.versions import MODES
from sluice.worker.runtime import Worker

ACCOUNT = 7
LINES = (
    "Hi, where is my order #{n}?",
    "It was supposed to arrive yesterday.",
    "Can I change the delivery address?",
    "Do you ship to Norway?",
    "What are your opening hours?",
    "The tent pole is broken, can I return it?",
    "Which size should I take for the hiking boots?",
    "Thanks!",
)


@dataclass
class LoadConfig:
    conversations: int = 200
    rate: float = 30.0
    duration_s: float = 60.0
    broker_latency_ms: float = 200.0
    burst_probability: float = 0.15
    burst_max: int = 3
    think_s: tuple[float, float] = (0.2, 2.0)
    reply_timeout_s: float = 60.0
    processes: int = 1
    seed: int = 1
    chatwoot_429_rate: float = 0.0
    chatwoot_500_rate: float = 0.0
    duplicate_delivery_rate: float = 0.0
    simulator_secret: str | None = None  # tests: sign webhooks with another secret
    # The fake Chatwoot: its version profile, who receives its webhooks, and whose token
    # Sluice gets (see the module docstring).
    chatwoot_version: str = "latest"
    mode: Mode = "account_webhook"
    api_token_kind: TokenKind = "user_admin"

    def __post_init__(self) -> None:
        parse_mode(self.mode)
        profile_for(self.chatwoot_version)  # ValueError for a version without a profile
        if self.api_token_kind not in ("user_admin", "user_agent", "bot"):
            raise ValueError("api_token_kind must be 'user_admin', 'user_agent' or 'bot'")

    @property
    def replies_as_agent_bot(self) -> bool:
        """Whether Sluice should post as the agent bot with its user token: an agent bot
        receives the webhooks, and the token is not the bot's own."""
        return self.mode == "agent_bot" and self.api_token_kind != "bot"


def parse_mode(value: str) -> Mode:
    """A receiver name from the command line: ``account_webhook`` or ``agent_bot``."""
    for mode in MODES:
        if value == mode:
            return mode
    raise ValueError(f"mode must be one of {', '.join(MODES)}, not {value!r}")


@dataclass
class Tally:
    sent: int = 0
    replied: int = 0
    missing: int = 0
    turns: int = 0
    bursts: int = 0
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
    sim: ChatwootSimulator,
    cfg: LoadConfig,
    bucket: TokenBucket,
    tally: Tally,
    stop: asyncio.Event,
    rng: random.Random,
) -> None:
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
        received = float(reply["received_at"])
        for at in created:
            tally.record(max(0.0, (received - at) * 1000))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(*cfg.think_s))


def start_customers(
    sim: ChatwootSimulator, cfg: LoadConfig, tally: Tally, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    """``cfg.conversations`` customers sharing one offered rate, each with its own
    reproducible random stream (seeded from ``cfg.seed``)."""
    rng = random.Random(cfg.seed)
    bucket = TokenBucket(cfg.rate)
    return [
        asyncio.create_task(customer(sim, cfg, bucket, tally, stop, random.Random(rng.random())))
        for _ in range(cfg.conversations)
    ]


AGENT_BOT_ID_VAR = "CHATWOOT_AGENT_BOT_ID"


def simulator_config(
    cfg: LoadConfig, *, api_token: str, webhook_secret: str, webhook_retry_delay_s: float = 1.0
) -> SimulatorConfig:
    """The fake Chatwoot of a load test or reliability scenario: ``cfg``'s version, receiver,
    token owner and injected faults; the agent bot's 3 s retry delay shortened to
    ``webhook_retry_delay_s``. Its webhook URL is set once Sluice's API listens."""
    return SimulatorConfig(
        api_token=api_token,
        webhook_secret=webhook_secret,
        seed=cfg.seed,
        rate_429=cfg.chatwoot_429_rate,
        rate_500=cfg.chatwoot_500_rate,
        duplicate_delivery_rate=cfg.duplicate_delivery_rate,
        webhook_retry_delay_s=webhook_retry_delay_s,
        chatwoot_version=cfg.chatwoot_version,
        mode=cfg.mode,
        api_token_kind=cfg.api_token_kind,
    )


def system_env(
    sim_url: str,
    token: str,
    secret: str,
    cfg: LoadConfig,
    queue: str,
    *,
    agent_bot_id: int | None = None,
) -> dict[str, str]:
    """The environment that wires Sluice's processes to the simulator and to ``queue``.
    With ``agent_bot_id`` (the simulator's bot) and a config whose replies go out as the
    agent bot, ``CHATWOOT_AGENT_BOT_ID`` too; :func:`wired_env` drops an inherited one
    otherwise."""
    env = {
        "CHATWOOT_URL": sim_url,
        "CHATWOOT_API_TOKEN": token,
        "CHATWOOT_WEBHOOK_SECRET": secret,
        "SLUICE_TEMPLATE_LATENCY_MS": str(cfg.broker_latency_ms),
        "SLUICE_QUEUE": queue,
    }
    if agent_bot_id is not None and cfg.replies_as_agent_bot:
        env[AGENT_BOT_ID_VAR] = str(agent_bot_id)
    return env


def wired_env(
    base: Mapping[str, str], extra: Mapping[str, str] | None, wiring: Mapping[str, str]
) -> dict[str, str]:
    """``base`` (the process environment), then ``extra``, then ``wiring`` (from
    :func:`system_env`). An agent-bot id only ``base`` has is removed: it belongs to another
    Chatwoot (or to an earlier agent-bot run in this process), not to this simulator."""
    env = {**base, **(extra or {}), **wiring}
    if AGENT_BOT_ID_VAR not in wiring and AGENT_BOT_ID_VAR not in (extra or {}):
        env.pop(AGENT_BOT_ID_VAR, None)
    return env


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def run_system_with_simulator(
    settings: Settings,
    redis_url: str,
    cfg: LoadConfig,
    body: Callable[[ChatwootSimulator, Runtime, str], Awaitable[dict[str, Any]]],
    *,
    queue: str | None = None,
    api_host: str = "127.0.0.1",
    api_port: int = 0,
    extra_env: Mapping[str, str] | None = None,
    chatwoot_via: Callable[[str], Awaitable[str]] | None = None,
    webhook_log_size: int = 10_000,
) -> dict[str, Any]:
    """Start the simulator, the API (intake) and workers wired to each other, run ``body``,
    and stop everything. Used by the load test and by `sluice up --demo`.

    ``chatwoot_via`` gets the simulator's URL and returns the one Sluice should use instead
    (the reliability tests put a fault proxy there). ``webhook_log_size`` bounds the
    simulator's delivery log (the reliability accounting needs every delivery of a run)."""
    token, secret = secrets.token_hex(16), secrets.token_hex(16)
    sim = ChatwootSimulator(
        simulator_config(cfg, api_token=token, webhook_secret=cfg.simulator_secret or secret),
        webhook_log_size=webhook_log_size,
    )
    sim_url = await sim.serve()
    if chatwoot_via is not None:
        sim_url = await chatwoot_via(sim_url)
    queue_name = queue or settings.queue
    wiring = system_env(sim_url, token, secret, cfg, queue_name, agent_bot_id=sim.config.bot_id)
    env = wired_env(os.environ, extra_env, wiring)
    env["REDIS_URL"] = redis_url
    run_settings = load_settings(env)
    # Handler settings are read from the process environment.
    os.environ.update(wiring)
    if AGENT_BOT_ID_VAR not in env:
        os.environ.pop(AGENT_BOT_ID_VAR, None)
    api = ApiServer(create_app(run_settings, redis_url), api_host, api_port)
    api_url = await api.start()
    sim.config.webhook_url = f"{api_url}/webhooks/chatwoot"
    children: subprocess.Popen[bytes] | None = None
    worker: Worker | None = None
    worker_task: asyncio.Task[None] | None = None
    try:
        async with open_runtime(run_settings, redis_url) as runtime:
            if cfg.processes > 1:
                children = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                    [sys.executable, "-m", "sluice", "worker", "--processes", str(cfg.processes)],
                    env=env,
                )
            else:
                pipeline, client = build_pipeline(runtime)
                worker = build_worker(runtime, pipeline, batch_size=run_settings.burst_max)
                worker.handle_signals = False
                worker_task = asyncio.create_task(worker.run())
            try:
                result = await body(sim, runtime, api_url)
            finally:
                if worker is not None and worker_task is not None:
                    await worker.stop()
                    await worker_task
                    await client.aclose()
            result["pool_peak_in_use"] = runtime.redis.metrics().as_dict().get("in_use_peak")
            return result
    finally:
        if children is not None:
            children.terminate()
            children.wait(timeout=90)
        await api.stop()
        await sim.aclose()


async def run_loadtest(
    settings: Settings,
    redis_url: str,
    cfg: LoadConfig,
    console: Console,
    *,
    queue: str | None = None,
) -> dict[str, Any]:
    """Run the load test on a queue of its own (``queue``, default ``loadtest-<time>``)."""
    queue = queue or f"loadtest-{int(time.time())}"

    async def body(sim: ChatwootSimulator, runtime: Runtime, api_url: str) -> dict[str, Any]:
        tally = Tally()
        stop = asyncio.Event()
        cpu0, wall0 = _cpu_s(), time.monotonic()
        customers = start_customers(sim, cfg, tally, stop)
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            deadline = time.monotonic() + cfg.duration_s
            while time.monotonic() < deadline:
                live.update(_progress(tally, cfg, deadline))
                await asyncio.sleep(0.5)
            stop.set()
            drain_until = time.monotonic() + cfg.reply_timeout_s
            while any(not c.done() for c in customers) and time.monotonic() < drain_until:
                live.update(_progress(tally, cfg, deadline))
                await asyncio.wait(customers, timeout=0.5)
        for c in customers:
            c.cancel()
        await asyncio.gather(*customers, return_exceptions=True)
        wall = time.monotonic() - wall0
        reader = WindowReader(runtime.queue.redis, runtime.queue.keys)
        seconds = int(min(3600, max(60, (cfg.duration_s // 10 + 2) * 10)))
        window = await reader.window("run", seconds)
        duplicates = _duplicate_replies(sim)
        report = {
            "config": cfg.__dict__ | {"think_s": list(cfg.think_s)},
            "sent": tally.sent,
            "replied": tally.replied,
            "missing": tally.missing,
            "turns": tally.turns,
            "bursts": tally.bursts,
            "duplicate_replies": duplicates,
            "achieved_rate": tally.sent / cfg.duration_s,
            "sla_ms": {
                "p50": tally.sla_ms.percentile(50),
                "p95": tally.sla_ms.percentile(95),
                "p99": tally.sla_ms.percentile(99),
                "max": max(tally.samples, default=None),
            },
            "compliance": {"within_10s": tally.within(10_000), "within_30s": tally.within(30_000)},
            "hops_mean_ms": window.breakdown(),
            "worker_utilization": window.utilization,
            "queue_wait_ms": {"p50": window.wait.percentile(50), "p99": window.wait.percentile(99)},
            "process": {
                "cpu_percent": 100 * (_cpu_s() - cpu0) / wall if wall else None,
                "rss_peak_mb": _rss_peak_mb(),
            },
            "chatwoot": sim.stats(),
        }
        return report

    return await run_system_with_simulator(settings, redis_url, cfg, body, queue=queue)


def _duplicate_replies(sim: ChatwootSimulator) -> int:
    """Replies posted twice for one turn (the same sluice_reply_id)."""
    seen: Counter[str] = Counter()
    for account, conversation in list(sim.store.conversation_keys()):
        for reply in sim.replies(account, conversation):
            reply_id = (reply.get("content_attributes") or {}).get("sluice_reply_id")
            if reply_id:
                seen[reply_id] += 1
    return sum(n - 1 for n in seen.values() if n > 1)


def _progress(tally: Tally, cfg: LoadConfig, deadline: float) -> Table:
    table = Table(title="sluice loadtest", header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    left = max(0.0, deadline - time.monotonic())
    table.add_row("time left", f"{left:.0f} s")
    table.add_row("conversations", str(cfg.conversations))
    table.add_row("lines sent / replied", f"{tally.sent} / {tally.replied}")
    table.add_row("missing", str(tally.missing))
    p50, p95 = tally.sla_ms.percentile(50), tally.sla_ms.percentile(95)
    table.add_row("SLA p50 / p95", f"{_ms(p50)} / {_ms(p95)}")
    within = tally.within(10_000)
    table.add_row("within 10 s", f"{within:.1%}" if within is not None else "-")
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.2f} s"


def report_table(report: dict[str, Any]) -> Table:
    table = Table(title="load test report", header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    sla = report["sla_ms"]
    rows = [
        (
            "lines sent / replied / missing",
            f"{report['sent']} / {report['replied']} / {report['missing']}",
        ),
        ("duplicate replies", str(report["duplicate_replies"])),
        ("Chatwoot", f"{report['chatwoot']['chatwoot_version']} {report['chatwoot']['mode']}"),
        ("achieved rate", f"{report['achieved_rate']:.1f} msg/s"),
        ("SLA p50 / p95 / p99", f"{_ms(sla['p50'])} / {_ms(sla['p95'])} / {_ms(sla['p99'])}"),
        (
            "within 10 s / 30 s",
            " / ".join(f"{v:.2%}" if v is not None else "-" for v in report["compliance"].values()),
        ),
        ("worker utilization", f"{(report['worker_utilization'] or 0):.0%}"),
        ("Redis pool peak in use", str(report.get("pool_peak_in_use"))),
        (
            "process CPU / RSS peak",
            f"{report['process']['cpu_percent']:.0f} % / {report['process']['rss_peak_mb']:.0f} MB",
        ),
    ]
    for hop, value in report["hops_mean_ms"].items():
        rows.append((f"mean {hop}", "-" if value is None else f"{value:.0f} ms"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
