"""Alerting end to end with a real Prometheus and Alertmanager.

Debian's ``prometheus`` and ``prometheus-alertmanager`` (``scripts/ensure-prometheus.sh``,
run by ``make test-slow``; without them both tests skip and say why) run on free loopback
ports with their own data directories. Sluice runs as real processes (``sluice serve`` and
``sluice worker``, :class:`~tests.reliability.system.ProcessSystem`) wired to the Chatwoot
simulator in the test process, which drives the traffic. Alertmanager delivers to a real
HTTP receiver here (:class:`~tests.reliability.monitoring_stack.WebhookReceiver`).

1. ``test_prometheus_rules_fire_in_order_and_resolve``: Prometheus scrapes Sluice's
   ``/metrics`` with the shipped ``deploy/prometheus/prometheus.yml`` (bearer token file
   and all) and evaluates the shipped rule files; Alertmanager runs the shipped
   ``deploy/alertmanager/alertmanager.yml``. A slow broker breaks the SLA; the SLA alerts
   fire in the order their ``for:`` durations give, the inhibition mutes the slow burn
   while the fast one fires, and everything resolves after the broker is fast again.
2. ``test_sluice_alertmanager_channel_against_real_alertmanager``: Sluice's own alert
   engine posts to the same Alertmanager through its Alertmanager channel; the alert shows
   in ``GET /api/v2/alerts`` with its labels, is kept alive by re-sends, and resolves
   through an explicit ``endsAt`` after recovery.

**Why the rules run on a compressed clock.** The shipped rules judge minutes to hours:
``for:`` from 1 to 15 minutes, windows up to 6 hours, and Prometheus alerts have no
hysteresis, so an SLA alert resolves only once its short window has recovered (5 minutes
for SluiceSLAComplianceLow). Run as shipped, one breach and its recovery take well over 10
minutes. So every *Prometheus-side* time constant is divided by ``FACTOR`` (30): the
scrape and evaluation intervals (15 s -> 500 ms), recording-group intervals, each rule's
``for:``, every range selector in the expressions (``[5m]`` -> ``[10s]``, ``[6h]`` ->
``[12m]``) and Prometheus's alert resend delay (1 min -> 2 s). Nothing else changes:
expressions, thresholds, labels and annotations are the shipped ones, which the test
checks (:func:`~tests.reliability.monitoring_stack.without_durations`). What the rules
judge is not compressed: an SLA duration above 10 s is still above 10 s. The relative
order of ``for:`` durations, the property the firing order depends on, is preserved.

Run with ``.venv/bin/pytest -m slow tests/reliability/test_prometheus_alertmanager.py -s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml

from sluice.loadtest import ACCOUNT, LoadConfig
from sluice.queue.queue import Queue
from sluice.simulator import ChatwootSimulator

from ..integration.conftest import delete_queue_keys
from .monitoring_stack import (
    PROMETHEUS_DIR,
    Server,
    WebhookReceiver,
    alertmanager_config,
    alertmanager_server,
    binaries,
    get_json,
    poll,
    prometheus_config,
    prometheus_server,
    without_durations,
)
from .system import ProcessSystem, spawn_announced, terminate

pytestmark = pytest.mark.slow

FACTOR = 30  # Prometheus's clock runs 30x faster (see the module docstring)
RATE = 2.0  # new customer messages per second, throughout
SLOW_BROKER_MS = 15_000  # beyond the 10 s SLA budget: every turn is handed off at its deadline
SLOTS = "50"  # 2 msg/s x 10 s in flight = 20 busy slots: 40 %, no utilization alert
FIRE_WITHIN_S = 90.0
RESOLVE_WITHIN_S = 120.0

FAST = "SluiceSLABurnRateFast"
LOW = "SluiceSLAComplianceLow"
SLOW = "SluiceSLABurnRateSlow"
SEVERITY = {FAST: "critical", LOW: "warning", SLOW: "warning"}

OLDEST = "oldest_waiting_age_high"
RESEND_S = 2.0
EVALUATION_S = 1.0
LEASE_S = 4 * max(RESEND_S, EVALUATION_S)  # Prometheus's ValidUntil rule, as the channel has it


def stack_or_skip() -> tuple[str, str]:
    found = binaries()
    if found is None:
        pytest.skip(
            "prometheus and prometheus-alertmanager are not installed; "
            "scripts/ensure-prometheus.sh installs Debian's packages (make test-slow runs it, "
            "as root with apt)"
        )
    return found


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
async def cleanup(redis_client: aioredis.Redis, queue_name: str) -> AsyncIterator[None]:
    yield
    await delete_queue_keys(redis_client, queue_name)


class Traffic:
    """``rate`` customer messages a second, each in a new conversation.

    A new conversation per message keeps every message a first turn: a turn handed off at
    its SLA deadline opens its conversation for humans, and the bot would then skip that
    conversation's later lines (fast completions that would hide the breach).
    """

    def __init__(self, sim: ChatwootSimulator, rate: float) -> None:
        self.sim = sim
        self.period = 1.0 / rate
        self.sent = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="customers")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            conversation = await self.sim.create_conversation(ACCOUNT)
            await self.sim.customer_message(
                ACCOUNT, conversation, f"line {self.sent}: where is my order?"
            )
            self.sent += 1
            next_at += self.period
            # Pacing the offered load, not waiting for a state: stop() ends it at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, next_at - time.monotonic()))


async def prom_query(prom: Server, expr: str) -> list[dict[str, Any]]:
    body = await get_json(prom.url + "/api/v1/query", {"query": expr})
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def am_alerts(am: Server, *matchers: str) -> list[dict[str, Any]]:
    """Alertmanager's active alerts (``GET /api/v2/alerts``), filtered by label matchers."""
    alerts: list[dict[str, Any]] = await get_json(
        am.url + "/api/v2/alerts", [("filter", m) for m in matchers]
    )
    return alerts


def write_token(directory: Path) -> tuple[str, Path]:
    """The admin token, and the file Prometheus reads it from (token only, mode 0600)."""
    token = secrets.token_hex(16)
    path = directory / "sluice-admin-token"
    path.touch(mode=0o600)
    path.write_text(token)
    return token, path


def report(tmp_path: Path, name: str, figures: dict[str, Any]) -> None:
    """Print the measured figures (make test-slow runs with -s) and keep them as JSON."""
    (tmp_path / f"{name}.json").write_text(json.dumps(figures, indent=2))
    print(f"\n{name}: " + json.dumps(figures))


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("cleanup")
async def test_prometheus_rules_fire_in_order_and_resolve(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    """A broker slower than the 10 s SLA budget hands every turn off at its deadline, so
    every message finishes after 10 s. All three SLA rules see compliance 0 at the same
    evaluation, so they fire in the order of their ``for:`` durations (compressed: 4 s,
    10 s, 30 s): SluiceSLABurnRateFast (critical), SluiceSLAComplianceLow, then
    SluiceSLABurnRateSlow, which the shipped inhibition holds back in Alertmanager while
    the fast burn fires. Then a worker with a fast broker replaces the slow one (traffic
    goes on): the fast burn resolves first (its 10 s window needs 28 % within the SLA),
    which releases the slow burn's notification; then compliance (95 % of the 10 s window)
    and last the slow burn (70 % of its 1 min window). No other rule fires: the queue never
    backs up and the slots stay 40 % busy."""
    prometheus_bin, alertmanager_bin = stack_or_skip()
    figures: dict[str, Any] = {"factor": FACTOR, "rate_per_s": RATE}
    token, token_file = write_token(tmp_path)
    cfg = LoadConfig(broker_latency_ms=SLOW_BROKER_MS)
    env = {"SLUICE_ADMIN_TOKEN": token, "WORKER_CONCURRENCY": SLOTS}
    receiver = WebhookReceiver()
    async with contextlib.AsyncExitStack() as stack:
        hook = await receiver.start()
        stack.push_async_callback(receiver.close)
        am = alertmanager_server(
            alertmanager_bin,
            alertmanager_config(tmp_path, webhook_url=hook, group_wait="1s", group_interval="1s"),
            tmp_path / "alertmanager-data",
            tmp_path,
        )
        stack.push_async_callback(am.stop)
        figures["alertmanager_ready_s"] = round(await am.start(), 2)
        system = await stack.enter_async_context(
            ProcessSystem(redis_url, queue_name, tmp_path, cfg=cfg, env=env)
        )
        prom = prometheus_server(
            prometheus_bin,
            prometheus_config(
                tmp_path,
                factor=FACTOR,
                sluice=f"127.0.0.1:{system.api_port}",
                token_file=token_file,
                alertmanager=am.hostport,
            ),
            tmp_path / "prometheus-data",
            tmp_path,
            FACTOR,
        )
        stack.push_async_callback(prom.stop)
        figures["prometheus_ready_s"] = round(await prom.start(), 2)

        # The generated rules are the shipped ones but for their durations.
        for name in ("sluice-alerts.yml", "recording-rules.yml"):
            shipped = yaml.safe_load((PROMETHEUS_DIR / name).read_text())
            generated = yaml.safe_load((tmp_path / name).read_text())
            assert without_durations(generated) == without_durations(shipped)
        rules = await get_json(prom.url + "/api/v1/rules")
        loaded = {g["name"] for g in rules["data"]["groups"]}
        shipped_groups = {
            g["name"]
            for name in ("sluice-alerts.yml", "recording-rules.yml")
            for g in yaml.safe_load((PROMETHEUS_DIR / name).read_text())["groups"]
        }
        assert loaded == shipped_groups

        async def scraped() -> bool:
            up = await prom_query(prom, 'up{job="sluice"}')
            return bool(up) and up[0]["value"][1] == "1"

        # Prometheus really scrapes Sluice, through the bearer token file.
        await poll("Prometheus scrapes Sluice (up == 1)", scraped, within=30)
        series = await prom_query(prom, f'sluice_workers{{queue="{queue_name}"}}')
        assert series and series[0]["value"][1] == "1"

        traffic = Traffic(system.sim, RATE)
        traffic.start()
        stack.push_async_callback(traffic.stop)
        breach_at = time.time()

        fast = await receiver.wait_for(FAST, "firing", FIRE_WITHIN_S)
        low = await receiver.wait_for(LOW, "firing", FIRE_WITHIN_S)

        async def slow_inhibited() -> list[dict[str, Any]]:
            found = await am_alerts(am, f'alertname="{SLOW}"')
            return [a for a in found if a["status"]["state"] == "suppressed"]

        (held,) = await poll(f"{SLOW} firing and inhibited", slow_inhibited, within=FIRE_WITHIN_S)
        assert held["status"]["inhibitedBy"], held["status"]
        inhibited_at = time.time()
        assert receiver.first(SLOW, "firing") is None  # held back, not delivered
        firing_in_prometheus = await prom_query(prom, 'ALERTS{alertstate="firing"}')
        assert {a["metric"]["alertname"] for a in firing_in_prometheus} == {FAST, LOW, SLOW}

        # Recovery: a worker whose broker answers at once replaces the slow one.
        fast_env = {**system.env, "SLUICE_TEMPLATE_LATENCY_MS": "0"}
        replacement, _ = await spawn_announced(
            fast_env, tmp_path / "worker-fast.log", b" started: ", "worker"
        )
        slow_worker, system.worker = system.worker, replacement  # ProcessSystem stops it
        recovered_at = time.time()
        await terminate([slow_worker])

        fast_done = await receiver.wait_for(FAST, "resolved", RESOLVE_WITHIN_S)
        slow = await receiver.wait_for(SLOW, "firing", RESOLVE_WITHIN_S)
        low_done = await receiver.wait_for(LOW, "resolved", RESOLVE_WITHIN_S)
        slow_done = await receiver.wait_for(SLOW, "resolved", RESOLVE_WITHIN_S)
        finished_at = time.time()
        assert await scraped()
        span = f"[{int(finished_at - breach_at) + 5}s]"
        (scrapes,) = await prom_query(prom, f'count_over_time(up{{job="sluice"}}{span})')
        (good,) = await prom_query(prom, f'sum_over_time(up{{job="sluice"}}{span})')
        ever_firing = await prom_query(prom, f'max_over_time(ALERTS{{alertstate="firing"}}{span})')
        await traffic.stop()

    # Firing in the order of the rules' for: durations; the slow burn only once the fast
    # one has ended (the inhibition), after the recovery.
    assert fast.at < low.at < inhibited_at < recovered_at
    assert slow.at >= parse_time(fast_done.ends_at)
    # Resolved in the order of their short windows (10 s at 28 %, 10 s at 95 %, 1 min).
    assert recovered_at < fast_done.at < low_done.at < slow_done.at
    # The fast burn's resolution and the slow burn's release come from two groups'
    # flushes about a second apart, in either order.
    events = list(receiver.events())
    assert events[:2] == [("firing", FAST), ("firing", LOW)]
    assert set(events[2:4]) == {("resolved", FAST), ("firing", SLOW)}
    assert events[4:] == [("resolved", LOW), ("resolved", SLOW)]
    for delivery in receiver.deliveries:
        assert delivery.labels["queue"] == queue_name
        assert delivery.labels["severity"] == SEVERITY[delivery.alertname]
        assert queue_name in delivery.annotations["summary"]
        assert {"description", "runbook"} <= set(delivery.annotations)
    for done in (fast_done, low_done, slow_done):
        assert breach_at < parse_time(done.starts_at) < parse_time(done.ends_at) <= done.at
    # Nothing else ever fired in Prometheus: no queue, no saturation, no scrape failure.
    assert {s["metric"]["alertname"] for s in ever_firing} == {FAST, LOW, SLOW}

    figures.update(
        messages=traffic.sent,
        fired_after_breach_s={
            FAST: round(fast.at - breach_at, 1),
            LOW: round(low.at - breach_at, 1),
            f"{SLOW} (firing, inhibited in Alertmanager)": round(inhibited_at - breach_at, 1),
        },
        after_recovery_s={
            f"{FAST} resolved": round(fast_done.at - recovered_at, 1),
            f"{SLOW} delivered (inhibition lifted)": round(slow.at - recovered_at, 1),
            f"{LOW} resolved": round(low_done.at - recovered_at, 1),
            f"{SLOW} resolved": round(slow_done.at - recovered_at, 1),
        },
        scrapes_ok=f"{good['value'][1]}/{scrapes['value'][1]}",
        breach_s=round(recovered_at - breach_at, 1),
        total_s=round(finished_at - breach_at, 1),
    )
    report(tmp_path, "prometheus_alertmanager", figures)


@pytest.mark.usefixtures("cleanup")
async def test_sluice_alertmanager_channel_against_real_alertmanager(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str, tmp_path: Path
) -> None:
    """Sluice's own engine, with ``SLUICE_ALERT_ALERTMANAGER_URL`` pointing at the real
    Alertmanager (shipped configuration). A live rate-limit override far below the traffic
    (1 job/s against 3 messages/s: an operator's mistake) backs the queue up; the oldest
    waiting message passes the 5 s threshold and ``oldest_waiting_age_high`` fires. The
    other rules are set out of reach so the test knows the one alert to expect (their
    windows are minutes long; this is about the channel, not the rules).

    Alertmanager must show the alert with the engine's labels, keep it active through the
    channel's re-sends (every 2 s here, each pushing ``endsAt`` ahead by 4 x 2 s), deliver
    it to the receiver, and resolve it when the override is lifted: through the ``endsAt``
    Sluice posts at the resolution, although the engine's own resolved notice waits for
    its 5-minute cooldown (left at its default on purpose)."""
    _, alertmanager_bin = stack_or_skip()
    figures: dict[str, Any] = {}
    token, _ = write_token(tmp_path)
    receiver = WebhookReceiver()
    async with contextlib.AsyncExitStack() as stack:
        hook = await receiver.start()
        stack.push_async_callback(receiver.close)
        am = alertmanager_server(
            alertmanager_bin,
            alertmanager_config(tmp_path, webhook_url=hook, group_wait="1s", group_interval="1s"),
            tmp_path / "alertmanager-data",
            tmp_path,
        )
        stack.push_async_callback(am.stop)
        await am.start()
        env = {
            "SLUICE_ADMIN_TOKEN": token,
            "SLUICE_ALERT_ALERTMANAGER_URL": am.url,
            "SLUICE_ALERT_ALERTMANAGER_RESEND_S": str(RESEND_S),
            "SLUICE_ALERT_EVALUATION_INTERVAL_S": str(EVALUATION_S),
            "SLUICE_ALERT_FOR_S": "1",
            "SLUICE_ALERT_OLDEST_WAITING_CRITICAL_MS": "5000",
            # Out of reach, so that the oldest-waiting alert is the only one.
            "SLUICE_ALERT_QUEUE_WAIT_WARNING_MS": "3600000",
            "SLUICE_ALERT_QUEUE_WAIT_CRITICAL_MS": "7200000",
            "SLUICE_ALERT_SLA_MIN_SAMPLES": "1000000000",
            "SLUICE_ALERT_FAILURE_RATE_MIN_SAMPLES": "1000000000",
            "SLUICE_ALERT_BURN_RATE_SLOW": "1000",
        }
        cfg = LoadConfig(broker_latency_ms=0)
        system = await stack.enter_async_context(
            ProcessSystem(redis_url, queue_name, tmp_path, cfg=cfg, env=env)
        )
        queue = Queue(queue_name, redis=redis_client)
        await queue.set_rate_limit(1)
        traffic = Traffic(system.sim, 3.0)
        traffic.start()
        stack.push_async_callback(traffic.stop)
        breach_at = time.time()
        matcher = (f'alertname="{OLDEST}"', f'queue="{queue_name}"')

        (alert,) = await poll(
            f"{OLDEST} active in Alertmanager", lambda: am_alerts(am, *matcher), within=60
        )
        fired_at = time.time()
        assert alert["labels"] == {"alertname": OLDEST, "queue": queue_name, "severity": "critical"}
        assert set(alert["annotations"]) == {"summary", "value", "threshold"}
        assert alert["annotations"]["threshold"] == "5.0 s"
        assert alert["status"]["state"] == "active"
        assert [r["name"] for r in alert["receivers"]] == ["sluice-oncall"]
        assert "generatorURL" not in alert or not alert["generatorURL"]
        lease = parse_time(alert["endsAt"]) - parse_time(alert["updatedAt"])
        assert abs(lease - LEASE_S) < 1.5, lease
        assert breach_at - 1 < parse_time(alert["startsAt"]) < fired_at
        delivered = await receiver.wait_for(OLDEST, "firing", 30)
        assert delivered.labels["severity"] == "critical"

        # Kept alive: re-posted every RESEND_S, each time with endsAt pushed ahead.
        updates = [alert]

        async def reposted() -> bool:
            (now_alert,) = await am_alerts(am, *matcher)
            if now_alert["updatedAt"] != updates[-1]["updatedAt"]:
                updates.append(now_alert)
            return len(updates) >= 3

        await poll("two re-sends of the firing alert", reposted, within=4 * RESEND_S + 4)
        ends = [parse_time(a["endsAt"]) for a in updates]
        assert ends == sorted(ends) and ends[-1] > ends[0]
        assert {a["startsAt"] for a in updates} == {alert["startsAt"]}  # one episode
        every = await am_alerts(am, f'queue="{queue_name}"')
        assert [a["labels"]["alertname"] for a in every] == [OLDEST]

        # Recovery: the override is lifted, the backlog drains, the alert resolves.
        await queue.set_rate_limit(None)
        recovered_at = time.time()

        async def gone() -> bool:
            return not await am_alerts(am, *matcher)

        await poll(f"{OLDEST} no longer active in Alertmanager", gone, within=60)
        left_at = time.time()
        resolved = await receiver.wait_for(OLDEST, "resolved", 30)
        history = await get_json(system.api_url + "/api/admin/alerts", token=token)
        await traffic.stop()

    ended = parse_time(resolved.ends_at)
    assert recovered_at - 1 < ended < left_at + 1
    # Sluice's resolution time, not a lease running out (that would be ends[-1] or later).
    assert ended < ends[-1]
    ours = [e for e in history["history"] if e["rule"] == OLDEST and e["event"] == "resolved"]
    assert ours and abs(ours[-1]["at"] - ended) < 0.01
    figures.update(
        messages=traffic.sent,
        fired_after_breach_s=round(fired_at - breach_at, 1),
        resends_seen=len(updates) - 1,
        lease_s=round(lease, 1),
        resolved_in_alertmanager_after_recovery_s=round(left_at - recovered_at, 1),
        resolved_delivered_after_recovery_s=round(resolved.at - recovered_at, 1),
    )
    report(tmp_path, "sluice_alertmanager_channel", figures)
