"""The Chatwoot simulator served on loopback from a thread of its own, so a command run by
``CliRunner`` (which starts its own event loop) talks to it over real HTTP."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from sluice.simulator import ApiCall, ChatwootSimulator, SimulatorConfig

T = TypeVar("T")

ADMIN_TOKEN = "admin-token-3c1f"  # administrator 23
AGENT_TOKEN = "agent-token-77ab"  # agent 24, role agent
BOT_TOKEN = "bot-token-e02d"
SECRET = "configured-secret-51"


class SimThread:
    """``start()`` serves a simulator built from ``config`` and returns its URL; ``stop()``
    ends it. ``calls`` are the REST calls it answered."""

    def __init__(self, **config: Any) -> None:
        options: dict[str, Any] = {
            "api_token": ADMIN_TOKEN,
            "bot_token": BOT_TOKEN,
            "user_tokens": {AGENT_TOKEN: 24},
        }
        options.update(config)
        self.config = SimulatorConfig(**options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.sim: ChatwootSimulator | None = None
        self.url = ""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def start(self) -> str:
        self.thread.start()

        async def serve() -> tuple[ChatwootSimulator, str]:
            sim = ChatwootSimulator(self.config)
            return sim, await sim.serve()

        self.sim, self.url = self.run(serve())
        return self.url

    def stop(self) -> None:
        if self.sim is not None:
            self.run(self.sim.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    @property
    def calls(self) -> list[ApiCall]:
        assert self.sim is not None
        return list(self.sim.calls)

    def routes(self, method: str | None = None) -> list[str]:
        """``"METHOD /route"`` of each call (``method`` filters)."""
        return [f"{c.method} {c.route}" for c in self.calls if method is None or c.method == method]

    def clear(self) -> None:
        assert self.sim is not None
        self.sim.clear_calls()
