"""The whole system on loopback: the Chatwoot simulator, the API (intake) and workers wired
to each other, as `sluice up --demo` and the end-to-end tests run it."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sluice.api.factory import create_app
from sluice.api.server import ApiServer
from sluice.chatwoot.receivers import NEEDED_EVENTS
from sluice.control.controller import ConcurrencyController, controller_from_settings
from sluice.loadtest.config import LoadConfig
from sluice.service.runtime import Runtime, open_runtime
from sluice.service.wiring import build_worker, worker_handler
from sluice.settings.config import Settings, load_settings
from sluice.simulator import ChatwootSimulator, SimulatorConfig
from sluice.worker import Worker

AGENT_BOT_ID_VAR = "CHATWOOT_AGENT_BOT_ID"


def simulator_config(
    cfg: LoadConfig, *, api_token: str, webhook_secret: str, webhook_retry_delay_s: float = 1.0
) -> SimulatorConfig:
    """The fake Chatwoot of a load test or reliability scenario: ``cfg``'s version, receiver,
    token owner, injected faults and size (:meth:`LoadConfig.chatwoot_sizing`); the agent
    bot's 3 s retry delay shortened to ``webhook_retry_delay_s``. Its webhook URL is set once
    Sluice's API listens."""
    rate_limit_per_min, sidekiq_threads = cfg.chatwoot_sizing()
    return SimulatorConfig(
        # The account webhook as `sluice chatwoot setup` creates it: subscribed to the
        # events Sluice reads, not to typing indicators and the like.
        webhook_subscriptions=NEEDED_EVENTS,
        rate_limit_per_min=rate_limit_per_min,
        webhook_concurrency=sidekiq_threads,
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
    controller: ConcurrencyController | None = None
    try:
        async with open_runtime(run_settings, redis_url) as runtime:
            if cfg.processes > 1:
                children = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                    [sys.executable, "-m", "sluice", "worker", "--processes", str(cfg.processes)],
                    env=env,
                )
            else:
                chosen = worker_handler(runtime)  # the reply pipeline
                worker = build_worker(runtime, chosen.handler, batch_size=chosen.batch_size)
                worker.handle_signals = False
                worker_task = asyncio.create_task(worker.run())
                # WORKER_CONCURRENCY_MODE=adaptive: the queue's controller (`sluice worker`
                # children run their own candidates).
                controller = controller_from_settings(runtime.settings, runtime.queue)
                if controller is not None:
                    controller.start()
            try:
                result = await body(sim, runtime, api_url)
            finally:
                if controller is not None:
                    await controller.stop()
                if worker is not None and worker_task is not None:
                    await worker.stop()
                    await worker_task
                    await chosen.close()
            result["pool_peak_in_use"] = runtime.redis.metrics().as_dict().get("in_use_peak")
            return result
    finally:
        if children is not None:
            children.terminate()
            children.wait(timeout=90)
        await api.stop()
        await sim.aclose()
