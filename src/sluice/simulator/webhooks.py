"""Webhook delivery the way Chatwoot's jobs do it (``lib/webhooks/trigger.rb``,
``app/jobs/webhook_job.rb``, ``app/jobs/agent_bots/webhook_job.rb``; facts §1, §2).

- One POST of the compact JSON body, ``Content-Type``/``Accept: application/json``, with the
  ``WEBHOOK_TIMEOUT`` (5 s) as open and read timeout. Any non-2xx (3xx included) is a
  failure; so are timeouts and connection errors.
- Delivery jobs run on Sidekiq's threads (``SIDEKIQ_CONCURRENCY``, 10 by default in
  ``config/sidekiq.yml``): at most ``webhook_concurrency`` attempts are in flight, the
  others wait their turn as queued jobs do, and the timeout starts when the request does
  (it never counts a wait for a thread or a connection).
- Account (and API-inbox) webhooks: exactly one attempt, whatever happened (WebhookJob has
  no ``retry_on`` and Trigger swallows errors; issue #15920). A failed delivery is lost.
- Agent bots: retried only on HTTP 429 and 500 (``RETRYABLE_AGENT_BOT_STATUSES``), 3
  attempts in total ``webhook_retry_delay_s`` (3 s) apart since PR #13521; ``Retry-After``
  is ignored. Before #13521 the retries never took effect (one attempt).
- From the version that signs (account webhooks 4.11.2, #13573; bots 4.13, #13892) each
  delivery job carries ``X-Chatwoot-Delivery`` (a UUID made when the job is enqueued, the
  same on every retry) and, with a secret, ``X-Chatwoot-Timestamp`` and
  ``X-Chatwoot-Signature`` computed at each attempt.
- Since 4.14 (SafeFetch, #14155) a URL on a private or loopback address fails before any
  request unless ``SAFE_FETCH_ALLOW_PRIVATE_NETWORK`` (#14548).

A duplicate delivery re-runs the same job (same body, same delivery id), as happens when a
Sidekiq job runs twice: consumers must dedupe on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import ssl
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from time import monotonic  # durations; ``time.time`` stays patchable for signatures
from typing import Any
from urllib.parse import urlsplit

import httpx

from sluice.chatwoot.signature import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from sluice.monitor.histogram import Histogram
from sluice.simulator.config import SimulatorConfig
from sluice.simulator.versions import Mode, VersionProfile

# Webhooks::Trigger::RETRYABLE_AGENT_BOT_STATUSES (PR #13521).
RETRIED_STATUSES = frozenset({429, 500})
BLOCKED = "UnsafeUrlError"  # SafeFetch's error for a private/loopback destination


@dataclass
class Delivery:
    """One delivery job: its attempts (HTTP status or error name), its outcome
    (``delivered``, ``failed``, ``blocked`` by the SSRF filter, or ``skipped`` without a
    URL), and ``effect``: what Chatwoot did after a final failure (see ``handle_failure``)."""

    event: str
    delivery_id: str
    payload: dict[str, Any]
    attempts: list[int | str] = field(default_factory=list)
    delivered: bool = False
    duplicate: bool = False
    skipped: bool = False  # no webhook_url configured
    mode: Mode = "account_webhook"
    signed: bool = False  # carried X-Chatwoot-Delivery (and a signature with a secret)
    outcome: str = "pending"
    effect: str | None = None


def encode(payload: dict[str, Any]) -> bytes:
    """Compact JSON with UTF-8 kept as is, like Rails' ``to_json``."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _private_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


class WebhookSender:
    """Posts webhooks to ``config.webhook_url`` as ``config.mode`` and counts what happened."""

    def __init__(
        self,
        config: SimulatorConfig,
        profile: Callable[[], VersionProfile],
        *,
        log_size: int = 10_000,
    ) -> None:
        self.config = config
        self.profile = profile
        self.counters: Counter[str] = Counter()
        self.by_event: Counter[str] = Counter()
        # Why each failed delivery failed: its last attempt ("timeout", "ConnectError",
        # "HTTP 503", "UnsafeUrlError"), so a load test can say what lost a message.
        self.failed_by_reason: Counter[str] = Counter()
        # Milliseconds a delivery job waited for a Sidekiq thread, and each attempt's request:
        # a backlog here is Chatwoot's delay, not the receiver's.
        self.queued_ms = Histogram()
        self.request_ms = Histogram()
        # Bounded: a load test sends hundreds of thousands of events.
        self.log: deque[Delivery] = deque(maxlen=log_size)
        # One HTTP client per Sidekiq thread, handed out as the thread: an idle client is
        # an idle thread. See _thread.
        self._idle: asyncio.Queue[httpx.AsyncClient] | None = None
        self._clients: list[httpx.AsyncClient] = []
        self._tls: ssl.SSLContext | None = None
        self._thread_count = 0

    def _new_client(self) -> httpx.AsyncClient:
        if self._tls is None:
            # Loading the CA bundle takes ~20 ms: once, not once per thread (fifty threads
            # made their first deliveries stall the event loop for a second).
            self._tls = ssl.create_default_context()
        client = httpx.AsyncClient(
            verify=self._tls,
            headers={"User-Agent": "rest-client/2.1.0 (chatwoot-simulator)"},
            # A thread's Net::HTTP connection: one, kept while the server keeps it.
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        self._clients.append(client)
        return client

    @contextlib.asynccontextmanager
    async def _thread(self) -> AsyncIterator[httpx.AsyncClient]:
        """A Sidekiq worker thread (chatwoot/chatwoot config/sidekiq.yml: ``:concurrency:
        <%= ENV.fetch("SIDEKIQ_CONCURRENCY", 10) %>``), on which WebhookJob and
        AgentBots::WebhookJob run, with its own connection: at most
        ``webhook_concurrency`` attempts are in flight, the others wait for a thread. The
        threads are rebuilt when ``webhook_concurrency`` changes (between runs; attempts
        holding an old thread finish on it).

        One client per thread rather than one shared pool: httpcore's pool scans every
        connection it holds for each request, and a shared unbounded pool grew to hundreds
        of connections under load, which made that scan the simulator's main cost."""
        wanted = self.config.webhook_concurrency
        if self._idle is None or self._thread_count != wanted:
            self._idle, self._thread_count = asyncio.Queue(), wanted
            for _ in range(wanted):
                self._idle.put_nowait(self._new_client())
        idle = self._idle
        client = await idle.get()
        try:
            yield client
        finally:
            idle.put_nowait(client)

    async def aclose(self) -> None:
        clients, self._clients, self._idle = self._clients, [], None
        for client in clients:
            await client.aclose()

    def _headers(self, body: bytes, delivery: Delivery) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if delivery.signed:
            headers[DELIVERY_HEADER] = delivery.delivery_id
            if self.config.webhook_secret:
                timestamp = int(time.time())  # Time.now.to_i at each attempt
                headers[TIMESTAMP_HEADER] = str(timestamp)
                headers[SIGNATURE_HEADER] = sign(self.config.webhook_secret, timestamp, body)
        return headers

    async def _unsafe(self, url: str) -> bool:
        """SafeFetch's SSRF filter (4.14+): private, loopback or unresolvable hosts."""
        if not self.profile().ssrf_filter or self.config.safe_fetch_allow_private_network:
            return False
        host = urlsplit(url).hostname or ""
        if _private_host(host):
            return True
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None)
        except OSError:
            return True
        return any(_private_host(str(info[4][0])) for info in infos)

    async def _attempts(self, url: str, body: bytes, delivery: Delivery) -> bool:
        attempts = self.profile().attempts(delivery.mode)
        for attempt in range(attempts):
            if attempt:
                self.counters["retried"] += 1
                await asyncio.sleep(self.config.webhook_retry_delay_s)
            if await self._unsafe(url):
                delivery.attempts.append(BLOCKED)  # not retryable: handled as a failure
                delivery.outcome = "blocked"
                return False
            try:
                queued_at = monotonic()
                async with self._thread() as client:
                    started = monotonic()
                    self.queued_ms.observe((started - queued_at) * 1000)
                    self.counters["sent"] += 1
                    response = await client.post(
                        url,
                        content=body,
                        headers=self._headers(body, delivery),
                        # Net::HTTP open_timeout and read_timeout = WEBHOOK_TIMEOUT
                        # (lib/webhooks/trigger.rb, PR #12777; docs/chatwoot-facts.md §1):
                        # they time the request, never a wait for a thread or connection.
                        timeout=httpx.Timeout(self.config.webhook_timeout_s, pool=None),
                    )
            except httpx.TimeoutException:
                delivery.attempts.append("timeout")  # FetchError: never retried
                return False
            except httpx.TransportError as exc:
                delivery.attempts.append(type(exc).__name__)  # FetchError: never retried
                return False
            self.request_ms.observe((monotonic() - started) * 1000)
            delivery.attempts.append(response.status_code)
            if response.is_success:  # Net::HTTPSuccess: 2xx only, a 3xx is a failure
                return True
            # retryable_agent_bot_error?: bots only, 429 and 500 only; Retry-After ignored.
            if delivery.mode != "agent_bot" or response.status_code not in RETRIED_STATUSES:
                return False
        return False

    async def deliver(self, payload: dict[str, Any], *, duplicate: bool = False) -> Delivery:
        """Run one delivery job (and, when ``duplicate``, the same job once more)."""
        event = str(payload.get("event", ""))
        mode = self.config.mode
        delivery = Delivery(
            event,
            str(uuid.uuid4()),  # SecureRandom.uuid at enqueue time
            payload,
            duplicate=duplicate,
            mode=mode,
            signed=self.profile().signed(mode),
        )
        self.log.append(delivery)
        self.by_event[event] += 1
        url = self.config.webhook_url
        if not url:
            delivery.skipped = True
            delivery.outcome = "skipped"
            self.counters["skipped"] += 1
            return delivery
        body = encode(payload)
        delivery.delivered = await self._attempts(url, body, delivery)
        if duplicate:
            self.counters["duplicates"] += 1
            again = await self._attempts(url, body, delivery)
            delivery.delivered = delivery.delivered or again
        if delivery.delivered:
            delivery.outcome = "delivered"
        elif delivery.outcome != "blocked":
            delivery.outcome = "failed"
        self.counters["delivered" if delivery.delivered else "failed"] += 1
        if not delivery.delivered:
            self.failed_by_reason[failure_reason(delivery)] += 1
        if delivery.outcome == "blocked":
            self.counters["blocked"] += 1
        return delivery

    def stats(self) -> dict[str, Any]:
        return {
            "sent": self.counters["sent"],
            "delivered": self.counters["delivered"],
            "failed": self.counters["failed"],
            "retried": self.counters["retried"],
            "duplicates": self.counters["duplicates"],
            "skipped": self.counters["skipped"],
            "blocked": self.counters["blocked"],
            "filtered": self.counters["filtered"],
            "by_event": dict(self.by_event),
            "failed_by_reason": dict(self.failed_by_reason),
            "queued_ms": _percentiles(self.queued_ms),
            "request_ms": _percentiles(self.request_ms),
        }


def _percentiles(histogram: Histogram) -> dict[str, float | None]:
    return {f"p{q}": histogram.percentile(q) for q in (50, 95, 99)}


def failure_reason(delivery: Delivery) -> str:
    """A failed delivery's cause, from its last attempt: an error name (``timeout``,
    ``ConnectError``, ``UnsafeUrlError``…) or ``HTTP <status>``."""
    if not delivery.attempts:
        return "no attempt"
    last = delivery.attempts[-1]
    return f"HTTP {last}" if isinstance(last, int) else last
