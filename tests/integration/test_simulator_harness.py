"""Shared harness of the simulator tests (no tests here): a real webhook receiver on
loopback and a factory of simulators wired to it, torn down after each test."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response

from sluice.api.server import ApiServer
from sluice.chatwoot.client import ChatwootClient
from sluice.simulator import ChatwootSimulator, SimulatorConfig

USER_TOKEN = "user-token-7f3a"
BOT_TOKEN = "bot-token-91c2"
AGENT_TOKEN = "agent-token-5be0"  # a user token of agent 24, whose role is agent
SECRET = "sim-webhook-secret"
ADMIN_ID, AGENT_ID, BOT_ID = 23, 24, 4


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> Any:
        return json.loads(self.body)

    @property
    def event(self) -> str:
        return str(self.payload.get("event"))


@dataclass
class Receiver:
    """A real webhook endpoint: records raw requests, answers with scripted statuses."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    script: list[int] = field(default_factory=list)  # statuses to answer, then 200
    headers: dict[str, str] = field(default_factory=dict)  # added to scripted answers
    delay_s: float = 0.0  # a slow receiver: the latency being simulated, not a wait for an event
    in_flight: int = 0
    peak_in_flight: int = 0

    def events(self, name: str) -> list[Hit]:
        return [h for h in self.hits if h.event == name]

    def names(self) -> list[str]:
        return [h.event for h in self.hits]


def receiver_app(receiver: Receiver) -> FastAPI:
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        receiver.hits.append(Hit(dict(request.headers), await request.body()))
        receiver.in_flight += 1
        receiver.peak_in_flight = max(receiver.peak_in_flight, receiver.in_flight)
        try:
            if receiver.delay_s:
                await asyncio.sleep(receiver.delay_s)
            if receiver.script:
                return Response(status_code=receiver.script.pop(0), headers=receiver.headers)
            return Response(status_code=200)
        finally:
            receiver.in_flight -= 1

    return app


@dataclass
class Env:
    sim: ChatwootSimulator
    url: str
    receiver: Receiver

    def client(self, token: str = USER_TOKEN) -> ChatwootClient:
        return ChatwootClient(self.url, token, max_retries=0)

    def conversation(self, conversation_id: int, account_id: int = 7) -> dict[str, Any]:
        return self.sim.conversation(account_id, conversation_id)


Factory = Callable[..., Awaitable[Env]]


@contextlib.asynccontextmanager
async def simulators() -> AsyncIterator[Factory]:
    """``make(**config overrides)`` -> a serving simulator whose webhooks go to a fresh
    receiver; tokens: ``USER_TOKEN`` (administrator 23), ``BOT_TOKEN``, ``AGENT_TOKEN``."""
    started: list[tuple[ChatwootSimulator, ApiServer]] = []

    async def make(**overrides: Any) -> Env:
        receiver = Receiver()
        server = ApiServer(receiver_app(receiver), "127.0.0.1", 0)
        receiver.url = await server.start() + "/hook"
        options: dict[str, Any] = {
            "api_token": USER_TOKEN,
            "bot_token": BOT_TOKEN,
            "user_tokens": {AGENT_TOKEN: AGENT_ID},
            "webhook_url": receiver.url,
            "webhook_secret": SECRET,
            "accounts": (7, 11),
            "webhook_retry_delay_s": 0.02,
        }
        options.update(overrides)
        sim = ChatwootSimulator(SimulatorConfig(**options))
        started.append((sim, server))
        return Env(sim, await sim.serve(), receiver)

    try:
        yield make
    finally:
        for sim, server in started:
            await sim.aclose()
            await server.stop()
