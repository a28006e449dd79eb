"""The simulator's HTTP face: Chatwoot's REST subset, plus a small ``/_sim`` control API.

Order of checks per ``/api`` request mirrors production: rack-attack throttling first (so
even bad tokens count), then the (injected) network latency and faults, then token auth,
the agent-bot allow-list of the configured version, the account and the conversation, then
validation. Every request is recorded with its route template and final status so tests
can assert on exactly what Sluice called, including "nothing at all".

Routes live in :mod:`sluice.simulator.routes`, one module per resource: conversations
(show, status, priority, custom attributes, typing, labels), messages, assignments, agents,
setup (version, profile, inboxes, agent bots, webhooks) and the ``/_sim`` control API.
"""

from __future__ import annotations

import asyncio
import math

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from sluice.simulator.core import ApiCall, ChatwootSimulator, Fault
from sluice.simulator.routes import agents, assignments, control, conversations, messages, setup
from sluice.simulator.routes.common import Api, SimHTTPError

__all__ = ["SimHTTPError", "build_app"]


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def build_app(sim: ChatwootSimulator) -> FastAPI:
    """The FastAPI app bound to ``sim``'s state."""
    app = FastAPI(title="Chatwoot simulator", docs_url=None, redoc_url=None, openapi_url=None)
    api = Api(sim)
    for module in (conversations, messages, assignments, agents, setup, control):
        module.register(app, api)

    def route_of(request: Request) -> str:
        for route in app.router.routes:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                return str(getattr(route, "path", request.url.path))
        return request.url.path

    def fault_response(fault: Fault) -> Response:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = _format_seconds(fault.retry_after)
        key = {429: "injected_429", 500: "injected_500"}.get(fault.status, "injected_other")
        sim.counters[key] += 1
        if fault.status == 429:
            return PlainTextResponse("Retry later\n", 429, headers=headers)
        if fault.status >= 500:
            body = {"status": fault.status, "error": "Internal Server Error"}
            return JSONResponse(body, fault.status, headers=headers)
        return JSONResponse({"error": "Injected fault"}, fault.status, headers=headers)

    @app.exception_handler(SimHTTPError)
    async def sim_error(request: Request, exc: SimHTTPError) -> Response:
        return JSONResponse(exc.body, exc.status, headers=exc.headers)

    async def gate(scope: Scope, receive: Receive, send: Send) -> None:
        """rack-attack, injected latency and faults, then the request, recorded. Plain ASGI
        (not ``@app.middleware``): Starlette's BaseHTTPMiddleware streams every response
        through an extra task and memory channel, which made it the simulator's largest
        CPU cost under load."""
        path = scope.get("path", "")
        if scope["type"] != "http" or (path != "/api" and not path.startswith("/api/")):
            await inner(scope, receive, send)
            return
        request = Request(scope)
        method = request.method
        response: Response | None = None
        client = request.client.host if request.client else "unknown"
        wait = sim.limiter.hit(client, sim.clock())
        if wait is not None:
            sim.counters["rate_limited"] += 1
            retry_after = str(max(1, math.ceil(wait)))
            response = PlainTextResponse("Retry later\n", 429, headers={"Retry-After": retry_after})
        else:
            low, high = sim.config.latency_ms
            if high > 0:
                await asyncio.sleep(sim.rng.uniform(low, high) / 1000)
            fault = sim.take_fault(method, path, after=False) or sim.random_fault()
            if fault is not None:
                response = fault_response(fault)
        if response is not None:
            status = response.status_code
            await response(scope, receive, send)
        else:
            # A late fault: the request takes effect, the client only sees the failure.
            late = sim.take_fault(method, path, after=True)
            seen: dict[str, int] = {}

            async def send_or_swallow(message: Message) -> None:
                if message["type"] == "http.response.start":
                    seen["status"] = int(message["status"])
                if late is None:
                    await send(message)

            try:
                await inner(scope, receive, send_or_swallow)
            except ClientDisconnect:
                # The client gave up while its body was still being read (a best-effort call
                # past its deadline). Not a Chatwoot answer: Puma reads the whole request body
                # before Rails runs an action, so Chatwoot's controller would not have run
                # either; the harness records the call with nginx's 499 (client closed).
                seen.setdefault("status", 499)
            status = seen.get("status", 500)
            if late is not None:
                replaced = fault_response(late)
                status = replaced.status_code
                await replaced(scope, receive, send)
        sim.record(
            ApiCall(
                method=method,
                path=path,
                route=route_of(request),
                status=status,
                token=api.token_kind(request),
                at=sim.clock(),
                body=getattr(request.state, "sim_body", None),
            )
        )

    inner = app.build_middleware_stack()
    app.middleware_stack = gate
    return app
