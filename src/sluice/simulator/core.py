"""``ChatwootSimulator``: the fake Chatwoot used by demos, load tests and end-to-end tests.

Chatwoot itself cannot run here, so this is the one fake the project allows, and it is held
to real Chatwoot (``docs/chatwoot-facts.md``; the rules and their sources are listed in
``docs/simulator.md``): the same REST subset, auth rules, errors, webhook shapes, delivery
policy and side effects, per Chatwoot version (``SimulatorConfig.chatwoot_version``) and per
receiver (``SimulatorConfig.mode``: an account webhook or an agent bot). Tests drive it as
the *customer* and the *human agent* (``customer_message``, ``agent_message``,
``set_status``) while Sluice talks to it over real HTTP as the bot;
``replies``/``wait_for_reply`` observe what Sluice answered.

Webhooks caused by a driver call are awaited by default (``wait=True``) so a test knows the
intake has seen the event when the call returns; webhooks caused by API calls (the bot's
echo, a status change made by Sluice) go out in the background, as Chatwoot sends them from
a job after answering the request. ``flush()`` waits for those.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sluice.api.server import ApiServer
from sluice.simulator.config import SimulatorConfig
from sluice.simulator.drivers import SimulatorDrivers
from sluice.simulator.state import OUTGOING

log = logging.getLogger("sluice.simulator")


@dataclass(frozen=True)
class ApiCall:
    """One REST request as the simulator saw it (``route`` is the path template)."""

    method: str
    path: str
    route: str
    status: int
    token: str  # "user", "bot", "invalid" or "none"
    at: float
    body: Any = None


@dataclass
class Fault:
    """A scripted failure for the next ``remaining`` matching requests. ``after_processing``
    lets the request take effect and then answers with the error, like a proxy timing out
    after Chatwoot wrote the message: the ambiguous case idempotency keys exist for."""

    status: int
    remaining: int = 1
    path_contains: str | None = None
    method: str | None = None
    retry_after: float | None = None
    after_processing: bool = False

    def matches(self, method: str, path: str, after: bool) -> bool:
        return (
            self.remaining > 0
            and self.after_processing == after
            and (self.method is None or self.method.upper() == method)
            and (self.path_contains is None or self.path_contains in path)
        )


class RateLimiter:
    """rack-attack's throttle: a counter per client IP per fixed one-minute window.
    ``limit`` is a callable so a running simulator's config can be changed."""

    def __init__(self, limit: Callable[[], int], period_s: float = 60.0) -> None:
        self.limit = limit
        self.period_s = period_s
        self._counts: dict[tuple[str, int], int] = {}

    def hit(self, key: str, now: float) -> float | None:
        """Count a request; the seconds until the window resets when over the limit."""
        window = int(now // self.period_s)
        if len(self._counts) > 10_000:
            self._counts = {k: v for k, v in self._counts.items() if k[1] == window}
        count = self._counts.get((key, window), 0) + 1
        self._counts[(key, window)] = count
        if count > self.limit():
            return (window + 1) * self.period_s - now
        return None


class ChatwootSimulator(SimulatorDrivers):
    """In-memory Chatwoot with a FastAPI ``app``; see the module docstring."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        call_log_size: int = 100_000,
        webhook_log_size: int = 10_000,
    ):
        from sluice.simulator.app import build_app  # app.py imports this module at its top

        super().__init__(config, webhook_log_size=webhook_log_size)
        self.limiter = RateLimiter(lambda: self.config.rate_limit_per_min)
        self.faults: list[Fault] = []
        self.calls: deque[ApiCall] = deque(maxlen=call_log_size)
        self._activity = asyncio.Event()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.counters: Counter[str] = Counter()
        self._server: ApiServer | None = None
        self.app = build_app(self)

    # --- lifecycle ---------------------------------------------------------------------------

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve ``app`` with uvicorn in this event loop; returns the base URL."""
        if self._server is not None:
            raise RuntimeError("already serving")
        self._server = ApiServer(self.app, host, port)
        return await self._server.start()

    async def flush(self, timeout: float | None = 30.0) -> None:  # noqa: ASYNC109
        """Wait for background webhook deliveries (echoes, API-triggered status events)."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop serving, cancel pending deliveries, close the webhook client."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._server is not None:
            await self._server.stop()
            self._server = None
        await self.webhooks.aclose()
        self.reply_waiters.fail_all()

    async def __aenter__(self) -> ChatwootSimulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- fault injection and observation ------------------------------------------------------

    def inject_fault(
        self,
        status: int,
        *,
        count: int = 1,
        path_contains: str | None = None,
        method: str | None = None,
        retry_after: float | None = None,
        after_processing: bool = False,
    ) -> Fault:
        """Answer the next ``count`` matching API requests with ``status``."""
        fault = Fault(status, count, path_contains, method, retry_after, after_processing)
        self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str, *, after: bool) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path, after):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def random_fault(self) -> Fault | None:
        """A fault drawn at the configured rates (seeded, so runs are reproducible)."""
        if not (self.config.rate_429 or self.config.rate_500):
            return None
        draw = self.rng.random()
        if draw < self.config.rate_429:
            return Fault(429, retry_after=self.config.injected_retry_after_s)
        if draw < self.config.rate_429 + self.config.rate_500:
            return Fault(500)
        return None

    def record(self, call: ApiCall) -> None:
        self.calls.append(call)
        self.requests[(f"{call.method} {call.route}", call.status)] += 1
        self._activity.set()  # wake wait_for_activity(); a fresh event for the next call
        self._activity = asyncio.Event()

    async def wait_for_activity(self, timeout: float) -> None:  # noqa: ASYNC109 - driver API
        """Until the next API call answered by the simulator (a reply, an assignment, a
        status change, a read), for a harness that waits for the system under test to
        settle; raises ``TimeoutError`` after ``timeout`` seconds without one."""
        async with asyncio.timeout(timeout):
            await self._activity.wait()

    def clear_calls(self) -> None:
        """Forget recorded API calls (e.g. after setup, before asserting "no API calls")."""
        self.calls.clear()

    def stats(self) -> dict[str, Any]:
        """Requests by route and status, webhooks sent/failed, injected errors, volumes."""
        by_route: dict[str, dict[int, int]] = {}
        for (route, status), count in sorted(self.requests.items()):
            by_route.setdefault(route, {})[status] = count
        conversations = self.store.all_conversations()
        return {
            "requests": by_route,
            "requests_total": sum(self.requests.values()),
            "rate_limited": self.counters["rate_limited"],
            "injected": {
                "429": self.counters["injected_429"],
                "500": self.counters["injected_500"],
                "other": self.counters["injected_other"],
            },
            "webhooks": self.webhooks.stats(),
            "chatwoot_version": self.profile.version,
            "mode": self.config.mode,
            "conversations": len(conversations),
            "messages": sum(len(c.messages) for c in conversations),
            "replies": sum(
                1
                for c in conversations
                for m in c.messages
                if m.message_type == OUTGOING and not m.private
            ),
        }


async def run_simulator(
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    ready: Callable[[str, ChatwootSimulator], None] | None = None,
) -> None:
    """Serve a simulator until cancelled (``sluice simulate``); ``ready`` gets the URL."""
    simulator = ChatwootSimulator(config)
    try:
        url = await simulator.serve(host, port)
        log.info("Chatwoot simulator listening on %s", url)
        if ready is not None:
            ready(url, simulator)
        await asyncio.Event().wait()
    finally:
        await simulator.aclose()
