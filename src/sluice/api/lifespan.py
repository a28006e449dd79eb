"""What the API process opens when it starts and closes when it stops.

:func:`sluice.api.factory.create_app` builds the app without touching Redis or the disk;
everything with a connection or a file behind it is opened here, in the ASGI lifespan, and
put in :class:`~sluice.api.state.AppState` for the routes. So the same app serves
`sluice serve`, `sluice up` and the tests, each of which runs the lifespan in its own event
loop, and nothing is left open when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from sluice.alerts.config import AlertSettings
from sluice.alerts.service import MonitoringService
from sluice.api import process_metrics
from sluice.api.state import AppState
from sluice.broker.assignment import Assigner
from sluice.broker.config import load_brokers_from_env
from sluice.chatwoot.client import ChatwootClient
from sluice.deadlines.decide import deadline_policy
from sluice.deadlines.inbox_hours import InboxHours
from sluice.monitor.snapshot import Monitor
from sluice.queue.queue import Queue
from sluice.redis.pool import RedisHandle, RedisUnavailableError, connect_from_settings
from sluice.scaling.service import scaler_for
from sluice.service.conversations import Conversations
from sluice.service.intake import Intake
from sluice.service.runtime import queue_for
from sluice.service.spool import Spool, spool_path
from sluice.settings.config import Settings

log = logging.getLogger("sluice.api")

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


async def _connect(settings: Settings, url: str) -> RedisHandle:
    try:
        return await connect_from_settings(settings, url)
    except RedisUnavailableError as exc:
        # Still serve: the health document is most needed exactly when Redis is down.
        log.error("Redis unavailable at startup (%s); serving health as critical", exc)
        return await connect_from_settings(settings, url, warm=False)


def _inbox_hours(settings: Settings) -> tuple[InboxHours | None, ChatwootClient | None]:
    """Inboxes' working hours for business-hours SLA policies (sluice.deadlines.inbox_hours):
    only with SLA deadlines on and Chatwoot's API configured."""
    if not settings.deadline_from_sla or not settings.chatwoot_url:
        return None, None
    if settings.chatwoot_api_token is None:
        return None, None
    client = ChatwootClient(
        settings.chatwoot_url, settings.chatwoot_api_token.get_secret_value(), max_connections=2
    )
    return InboxHours(client.inbox), client


def _intake(
    settings: Settings, queue: Queue, spool: Spool, inbox_hours: InboxHours | None = None
) -> Intake:
    """The webhook intake: Chatwoot's messages into the queue, or into the spool while Redis
    cannot take them; a resolved conversation frees its broker."""
    return Intake(
        queue,
        Conversations(queue.redis, queue.keys, answer_open=settings.chatwoot_answer_open),
        secret=(
            settings.chatwoot_webhook_secret.get_secret_value()
            if settings.chatwoot_webhook_secret
            else None
        ),
        max_body_bytes=settings.webhook_max_bytes,
        default_account_id=settings.chatwoot_account_id,
        on_resolved=Assigner(queue.redis, queue.keys, load_brokers_from_env()).release,
        spool=spool,
        priority_from_chatwoot=settings.priority_from_chatwoot,
        deadlines=deadline_policy(settings, queue.priorities),
        inbox_hours=inbox_hours,
    )


def lifespan(
    settings: Settings,
    redis_url: str,
    *,
    alert_settings: AlertSettings | None,
    run_evaluator: bool,
) -> Lifespan:
    """The app's lifespan: open Redis (serving even when it is down), the intake spool and
    the monitoring; replay what the spool holds; close all of it on shutdown.
    ``run_evaluator`` makes this process a candidate for the alert leader."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        handle = await _connect(settings, redis_url)
        queue = queue_for(settings, handle.client)
        monitor = Monitor(
            queue, sla_objective=settings.sla_objective, rate_limit=settings.queue_rate_limit
        )
        spool = Spool(spool_path(settings.data_dir, settings.queue))
        service = MonitoringService(
            monitor,
            alert_settings,
            local_signals=lambda: spool.stats().signals(),
            scaler=scaler_for(queue, settings),
        )
        await spool.open()
        if spool.depth:
            log.warning("%d webhooks wait in the intake spool %s", spool.depth, spool.path)
        inbox_hours, chatwoot = _inbox_hours(settings)
        intake = _intake(settings, queue, spool, inbox_hours)
        app.state.sluice = AppState(
            settings=settings,
            redis=handle,
            queue=queue,
            monitor=monitor,
            alerts=service.alerts,
            alert_history=service.history,
            request_ack=service.request_ack,
            request_silence=service.request_silence,
            rules=service.rule_table(),
            intake=intake,
        )
        replayer = asyncio.create_task(intake.replay_spool(), name="spool")
        publisher = asyncio.create_task(
            process_metrics.publish_forever(
                queue.redis,
                queue.keys.api_processes(process_metrics.host_name()),
                lambda: process_metrics.readings(handle, spool.stats()),
            ),
            name="process-metrics",
        )
        if run_evaluator:
            service.start()
        try:
            yield
        finally:
            for task in (replayer, publisher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if run_evaluator:
                await service.stop()
            if inbox_hours is not None and chatwoot is not None:
                await inbox_hours.close()
                await chatwoot.aclose()
            await spool.close()
            await handle.close()

    return run
