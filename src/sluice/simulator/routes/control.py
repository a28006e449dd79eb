"""The ``/_sim`` control API: lets another process (a load generator, a demo) act as
customer and agent over HTTP. It needs ``api_token`` and is neither throttled nor recorded."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from sluice.simulator.config import AVAILABILITIES
from sluice.simulator.routes.common import Api, SimHTTPError, as_int, invalid, token_of
from sluice.simulator.state import STATUSES

BASE = "/_sim/accounts/{account_id}/conversations"


def register(app: FastAPI, api: Api) -> None:
    sim = api.sim

    def control(request: Request) -> None:
        token = token_of(request) or ""
        if not hmac.compare_digest(token.encode(), sim.config.api_token.encode()):
            raise SimHTTPError(401, {"error": "The control API needs the api_token"})

    def ids(account_id: str, conversation_id: str) -> tuple[int, int]:
        conversation = api.conversation_of(account_id, conversation_id)
        return conversation.account_id, conversation.display_id

    @app.get("/_sim/stats")
    async def sim_stats(request: Request) -> Response:
        control(request)
        return JSONResponse(json.loads(json.dumps(sim.stats())))

    @app.post(BASE)
    async def sim_create(account_id: str, request: Request) -> Response:
        control(request)
        body = await api.body_of(request)
        status = body.get("status")
        if status is not None and status not in STATUSES:
            raise invalid(f"'{status}' is not a valid status", "status")
        display_id = await sim.create_conversation(
            api.account_of(account_id), status=status, wait=bool(body.get("wait", True))
        )
        return JSONResponse({"id": display_id})

    @app.post(BASE + "/{conversation_id}/customer_message")
    async def sim_customer(account_id: str, conversation_id: str, request: Request) -> Response:
        control(request)
        account, display_id = ids(account_id, conversation_id)
        body = await api.body_of(request)
        content = body.get("content")
        attachments = body.get("attachments")
        if content is not None and not isinstance(content, str):
            raise invalid("Content is invalid", "content")
        if attachments is not None and not isinstance(attachments, list):
            raise invalid("Attachments must be a list", "attachments")
        message = await sim.customer_message(
            account,
            display_id,
            content,
            attachments=attachments,
            duplicate=bool(body.get("duplicate", False)),
            wait=bool(body.get("wait", True)),
        )
        return JSONResponse(message)

    @app.post(BASE + "/{conversation_id}/agent_message")
    async def sim_agent(account_id: str, conversation_id: str, request: Request) -> Response:
        control(request)
        account, display_id = ids(account_id, conversation_id)
        body = await api.body_of(request)
        content = body.get("content")
        if not isinstance(content, str) or not content.strip():
            raise invalid("Content can't be blank", "content")
        agent_id = as_int(body.get("agent_id"))
        if agent_id is not None and agent_id not in sim.store.agents:
            raise invalid(f"unknown agent {agent_id}", "agent_id")
        message = await sim.agent_message(
            account,
            display_id,
            content,
            agent_id=agent_id,
            private=bool(body.get("private", False)),
        )
        return JSONResponse(message)

    @app.post(BASE + "/{conversation_id}/status")
    async def sim_status(account_id: str, conversation_id: str, request: Request) -> Response:
        control(request)
        account, display_id = ids(account_id, conversation_id)
        body = await api.body_of(request)
        status = body.get("status")
        if not isinstance(status, str) or status not in STATUSES:
            raise invalid(f"'{status}' is not a valid status", "status")
        by_agent = as_int(body.get("by_agent"))
        if by_agent is not None and by_agent not in sim.store.agents:
            raise invalid(f"unknown agent {by_agent}", "by_agent")
        await sim.set_status(account, display_id, status, by_agent=by_agent)
        return JSONResponse(sim.conversation(account, display_id))

    @app.get(BASE + "/{conversation_id}/replies")
    async def sim_replies(account_id: str, conversation_id: str, request: Request) -> Response:
        control(request)
        account, display_id = ids(account_id, conversation_id)
        return JSONResponse(sim.replies(account, display_id))

    @app.get("/_sim/replies/stream")
    async def sim_reply_stream(request: Request) -> Response:
        """Every public reply from now on, one JSON object per line (with ``account_id`` and
        ``conversation_id``): one connection serves all the customers of a process, where a
        long poll per conversation would cost a request per reply."""
        control(request)
        replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        sim.reply_listeners.append(replies.put_nowait)

        async def lines() -> AsyncIterator[bytes]:
            try:
                yield b"\n"  # the subscription is in place once the client reads this
                while True:
                    yield json.dumps(await replies.get()).encode() + b"\n"
            finally:
                sim.reply_listeners.remove(replies.put_nowait)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.post("/_sim/agents/{agent_id}/availability")
    async def sim_availability(agent_id: str, request: Request) -> Response:
        control(request)
        body = await api.body_of(request)
        user_id = as_int(agent_id)
        if user_id is None or user_id not in sim.store.agents:
            raise SimHTTPError(404, {"error": "Resource could not be found"})
        status = body.get("availability_status")
        if status is not None and status not in AVAILABILITIES:
            raise invalid(f"availability_status must be one of {AVAILABILITIES}", "availability")
        connected = body.get("connected")
        if connected is not None and not isinstance(connected, bool):
            raise invalid("connected must be a boolean", "connected")
        sim.set_agent_availability(user_id, status, connected=connected)
        return JSONResponse(sim.shapes.agent_record(user_id, next(iter(sim.store.accounts))))
