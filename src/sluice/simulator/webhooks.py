"""Webhook delivery the way Chatwoot does it.

One POST of the compact JSON body with a 5 s timeout; when a secret is configured the
``X-Chatwoot-Signature``/``X-Chatwoot-Timestamp`` pair is computed per attempt and
``X-Chatwoot-Delivery`` (a UUID) is kept across retries. Retries follow the agent-bot job:
only on HTTP 429 and 500, a fixed delay apart; a timeout, a refused connection or any other
status is final. A duplicate delivery re-sends the same body with the same delivery id, as
happens in production when a job runs twice: consumers must dedupe on it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import httpx

from sluice.chatwoot.signature import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from sluice.simulator.config import SimulatorConfig

RETRIED_STATUSES = frozenset({429, 500})


@dataclass
class Delivery:
    """What happened to one webhook (all its attempts, and its duplicate if any)."""

    event: str
    delivery_id: str
    payload: dict[str, Any]
    attempts: list[int | str] = field(default_factory=list)  # HTTP status or error name
    delivered: bool = False
    duplicate: bool = False
    skipped: bool = False  # no webhook_url configured


def encode(payload: dict[str, Any]) -> bytes:
    """Compact JSON with UTF-8 kept as is, like Rails' ``to_json``."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class WebhookSender:
    """Posts webhooks to ``config.webhook_url`` and counts what happened."""

    def __init__(self, config: SimulatorConfig, *, log_size: int = 10_000) -> None:
        self.config = config
        self.counters: Counter[str] = Counter()
        self.by_event: Counter[str] = Counter()
        # Bounded: a load test sends hundreds of thousands of events.
        self.log: deque[Delivery] = deque(maxlen=log_size)
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        # Created lazily so it binds to the loop that actually sends.
        if self._http is None:
            self._http = httpx.AsyncClient(
                headers={"User-Agent": "rest-client/2.1.0 (chatwoot-simulator)"}
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _headers(self, body: bytes, delivery_id: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery_id}
        if self.config.webhook_secret:
            timestamp = int(time.time())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(self.config.webhook_secret, timestamp, body)
        return headers

    async def _attempts(self, url: str, body: bytes, delivery: Delivery) -> bool:
        for attempt in range(self.config.webhook_attempts):
            if attempt:
                self.counters["retried"] += 1
                await asyncio.sleep(self.config.webhook_retry_delay_s)
            self.counters["sent"] += 1
            try:
                response = await self._client().post(
                    url,
                    content=body,
                    headers=self._headers(body, delivery.delivery_id),
                    timeout=self.config.webhook_timeout_s,
                )
            except httpx.TimeoutException:
                delivery.attempts.append("timeout")
                return False
            except httpx.TransportError as exc:
                delivery.attempts.append(type(exc).__name__)
                return False
            delivery.attempts.append(response.status_code)
            if response.is_success:
                return True
            if response.status_code not in RETRIED_STATUSES:
                return False
        return False

    async def deliver(self, payload: dict[str, Any], *, duplicate: bool = False) -> Delivery:
        """Send one event (and, when ``duplicate``, the same delivery once more)."""
        event = str(payload.get("event", ""))
        delivery = Delivery(event, str(uuid.uuid4()), payload, duplicate=duplicate)
        self.log.append(delivery)
        self.by_event[event] += 1
        url = self.config.webhook_url
        if not url:
            delivery.skipped = True
            self.counters["skipped"] += 1
            return delivery
        body = encode(payload)
        delivery.delivered = await self._attempts(url, body, delivery)
        if duplicate:
            self.counters["duplicates"] += 1
            again = await self._attempts(url, body, delivery)
            delivery.delivered = delivery.delivered or again
        self.counters["delivered" if delivery.delivered else "failed"] += 1
        return delivery

    def stats(self) -> dict[str, Any]:
        return {
            "sent": self.counters["sent"],
            "delivered": self.counters["delivered"],
            "failed": self.counters["failed"],
            "retried": self.counters["retried"],
            "duplicates": self.counters["duplicates"],
            "skipped": self.counters["skipped"],
            "by_event": dict(self.by_event),
        }
