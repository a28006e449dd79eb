"""The simulator's HTTP face: Chatwoot's REST subset, plus a small ``/_sim`` control API.

Order of checks per ``/api`` request mirrors production: rack-attack throttling first (so
even bad tokens count), then the (injected) network latency and faults, then token auth,
the agent-bot allowlist, the account and the conversation, then validation. Every request
is recorded with its route template and final status so tests can assert on exactly what
Sluice called, including "nothing at all".

The ``/_sim`` routes let another process (a load generator, a demo) act as customer and
agent over HTTP; they need the user token and are neither throttled nor recorded.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.routing import Match

from sluice.simulator.core import ApiCall, ChatwootSimulator, Fault
from sluice.simulator.state import OUTGOING, STATUSES, Conversation

MAX_CONTENT = 150_000
CONTENT_TYPES = frozenset(
    {"text", "input_select", "cards", "form", "article", "input_email", "input_csat"}
)
PAGE_SIZE = 20
NOT_FOUND = {"error": "Resource could not be found"}


class SimHTTPError(Exception):
    """An error response in Chatwoot's format."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers


def _invalid(message: str, *attributes: str) -> SimHTTPError:
    """422 the way Rails renders ``ActiveRecord::RecordInvalid``."""
    return SimHTTPError(422, {"message": message, "attributes": list(attributes)})


@dataclass(frozen=True)
class Principal:
    kind: str  # "user" or "bot"
    user_id: int | None


def _token(request: Request) -> str | None:
    token = request.headers.get("api_access_token")
    if token:
        return token
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _same(a: str, b: str | None) -> bool:
    return b is not None and hmac.compare_digest(a.encode(), b.encode())


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def build_app(sim: ChatwootSimulator) -> FastAPI:
    """The FastAPI app bound to ``sim``'s state."""
    app = FastAPI(title="Chatwoot simulator", docs_url=None, redoc_url=None, openapi_url=None)
    config = sim.config

    def token_kind(request: Request) -> str:
        token = _token(request)
        if token is None:
            return "none"
        if _same(token, config.api_token):
            return "user"
        if _same(token, config.bot_token):
            return "bot"
        return "invalid"

    def authenticate(request: Request, *, bots: bool) -> Principal:
        kind = token_kind(request)
        if kind == "none":
            raise SimHTTPError(
                401, {"errors": ["You need to sign in or sign up before continuing."]}
            )
        if kind == "invalid":
            raise SimHTTPError(401, {"error": "Invalid Access Token"})
        if kind == "bot":
            if not bots:
                raise SimHTTPError(
                    401, {"error": "Access to this endpoint is not authorized for bots"}
                )
            return Principal("bot", None)
        return Principal("user", sim.store.token_user_id)

    def account_of(raw: str) -> int:
        account_id = _int(raw)
        if account_id is None or account_id not in sim.store.accounts:
            raise SimHTTPError(404, NOT_FOUND)
        return account_id

    def conversation_of(raw_account: str, raw_conversation: str) -> Conversation:
        account_id = account_of(raw_account)
        display_id = _int(raw_conversation)
        conversation = (
            sim.store.conversation(account_id, display_id) if display_id is not None else None
        )
        if conversation is None:
            raise SimHTTPError(404, NOT_FOUND)
        return conversation

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            parsed: object = {}
        else:
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise SimHTTPError(400, {"error": "Invalid JSON in request body"}) from None
        if not isinstance(parsed, dict):
            raise SimHTTPError(400, {"error": "Request body must be a JSON object"})
        request.state.sim_body = parsed
        return parsed

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

    @app.middleware("http")
    async def gate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if not path.startswith("/api/"):
            return await call_next(request)
        method = request.method
        response: Response | None = None
        client = request.client.host if request.client else "unknown"
        wait = sim.limiter.hit(client, sim.clock())
        if wait is not None:
            sim.counters["rate_limited"] += 1
            retry_after = str(max(1, math.ceil(wait)))
            response = PlainTextResponse("Retry later\n", 429, headers={"Retry-After": retry_after})
        else:
            low, high = config.latency_ms
            if high > 0:
                await asyncio.sleep(sim.rng.uniform(low, high) / 1000)
            fault = sim.take_fault(method, path, after=False) or sim.random_fault()
            if fault is not None:
                response = fault_response(fault)
        if response is None:
            response = await call_next(request)
            late = sim.take_fault(method, path, after=True)
            if late is not None:
                # The request took effect; the client only sees the failure.
                async for _ in response.body_iterator:  # type: ignore[attr-defined]
                    pass
                response = fault_response(late)
        sim.record(
            ApiCall(
                method=method,
                path=path,
                route=route_of(request),
                status=response.status_code,
                token=token_kind(request),
                at=sim.clock(),
                body=getattr(request.state, "sim_body", None),
            )
        )
        return response

    prefix = "/api/v1/accounts/{account_id}"
    conversation_path = prefix + "/conversations/{conversation_id}"

    @app.post(conversation_path + "/messages")
    async def create_message(account_id: str, conversation_id: str, request: Request) -> Response:
        principal = authenticate(request, bots=True)
        conversation = conversation_of(account_id, conversation_id)
        body = await body_of(request)
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            raise _invalid("Content is invalid", "content")
        message_type = body.get("message_type", "outgoing")
        if message_type not in ("outgoing", None):
            raise _invalid("Message type is not allowed for this inbox", "message_type")
        private = body.get("private", False)
        if isinstance(private, str) and private in ("true", "false"):
            private = private == "true"
        if not isinstance(private, bool):
            raise _invalid("Private is invalid", "private")
        content_type = body.get("content_type") or "text"
        if content_type not in CONTENT_TYPES:
            raise _invalid("Content type is not included in the list", "content_type")
        attributes = body.get("content_attributes") or {}
        if not isinstance(attributes, dict):
            raise _invalid("Content attributes is invalid", "content_attributes")
        if content is None or not content.strip():
            raise _invalid("Content can't be blank", "content")
        if len(content) > MAX_CONTENT:
            raise _invalid(f"Content is too long (maximum is {MAX_CONTENT} characters)", "content")
        message = sim.add_message(
            conversation,
            content=content,
            message_type=OUTGOING,
            sender_kind="agent_bot" if principal.kind == "bot" else "user",
            sender_id=config.bot_id if principal.kind == "bot" else principal.user_id,
            private=private,
            content_type=content_type,
            content_attributes=attributes,
        )
        echo = sim.shapes.message_webhook(message, conversation)
        await sim.emit([echo], wait=False)
        return JSONResponse(sim.shapes.message_push(message, conversation))

    @app.get(conversation_path + "/messages")
    async def list_messages(account_id: str, conversation_id: str, request: Request) -> Response:
        authenticate(request, bots=False)
        conversation = conversation_of(account_id, conversation_id)
        before = _int(request.query_params.get("before"))
        after = _int(request.query_params.get("after"))
        messages = conversation.messages
        if before is not None:
            messages = [m for m in messages if m.id < before][-PAGE_SIZE:]
        elif after is not None:
            messages = [m for m in messages if m.id > after][:100]
        else:
            messages = messages[-PAGE_SIZE:]
        assignee = conversation.assignee_id
        meta = {
            "labels": list(conversation.labels),
            "additional_attributes": {},
            "contact": sim.shapes.contact_push(conversation.contact),
            "assignee": sim.shapes.user_push(assignee) if assignee is not None else None,
            "agent_last_seen_at": int(conversation.agent_last_seen_at),
            "assignee_last_seen_at": 0,
        }
        payload = [sim.shapes.message_push(m, conversation) for m in messages]
        return JSONResponse({"meta": meta, "payload": payload})

    @app.post(conversation_path + "/assignments")
    async def assign(account_id: str, conversation_id: str, request: Request) -> Response:
        authenticate(request, bots=True)
        conversation = conversation_of(account_id, conversation_id)
        body = await body_of(request)
        if "assignee_id" in body:
            wanted = _int(body["assignee_id"])
            # Chatwoot: an unknown (or null) agent id unassigns and answers null.
            agent_id = wanted if wanted in sim.store.agents else None
            previous = conversation.assignee_id
            conversation.assignee_id = agent_id
            events = sim.updated_events(conversation, "assignee_id", previous, agent_id)
            await sim.emit(events, wait=False)
            if agent_id is None:
                return JSONResponse(None)
            return JSONResponse(sim.shapes.agent_record(agent_id, conversation.account_id))
        if "team_id" in body:
            team_id = _int(body["team_id"])
            previous = conversation.team_id
            conversation.team_id = team_id
            await sim.emit(
                sim.updated_events(conversation, "team_id", previous, team_id), wait=False
            )
            if team_id is None:
                return JSONResponse(None)
            team = {
                "id": team_id,
                "name": f"Team {team_id}",
                "description": "",
                "allow_auto_assign": True,
                "account_id": conversation.account_id,
                "is_member": False,
            }
            return JSONResponse(team)
        return JSONResponse(None)

    @app.post(conversation_path + "/toggle_status")
    async def toggle_status(account_id: str, conversation_id: str, request: Request) -> Response:
        authenticate(request, bots=True)
        conversation = conversation_of(account_id, conversation_id)
        body = await body_of(request)
        status = body.get("status")
        if status is None:  # Chatwoot toggles open <-> resolved without a status
            status = "resolved" if conversation.status == "open" else "open"
        if not isinstance(status, str) or status not in STATUSES:
            raise _invalid(f"'{status}' is not a valid status", "status")
        snoozed_until = _int(body.get("snoozed_until"))
        events = sim.status_events(conversation, status, snoozed_until=snoozed_until)
        await sim.emit(events, wait=False)
        payload = {
            "success": True,
            "current_status": conversation.status,
            "conversation_id": conversation.display_id,
        }
        return JSONResponse({"meta": {}, "payload": payload})

    @app.post(conversation_path + "/labels")
    async def set_labels(account_id: str, conversation_id: str, request: Request) -> Response:
        authenticate(request, bots=True)
        conversation = conversation_of(account_id, conversation_id)
        body = await body_of(request)
        labels = body.get("labels")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise _invalid("Labels must be a list of strings", "labels")
        previous = list(conversation.labels)
        conversation.labels = list(dict.fromkeys(label.strip() for label in labels if label))
        events = sim.updated_events(conversation, "label_list", previous, conversation.labels)
        await sim.emit(events, wait=False)
        return JSONResponse({"payload": list(conversation.labels)})

    @app.get(conversation_path + "/labels")
    async def get_labels(account_id: str, conversation_id: str, request: Request) -> Response:
        authenticate(request, bots=True)
        conversation = conversation_of(account_id, conversation_id)
        return JSONResponse({"payload": list(conversation.labels)})

    @app.get(conversation_path)
    async def get_conversation(account_id: str, conversation_id: str, request: Request) -> Response:
        authenticate(request, bots=True)
        conversation = conversation_of(account_id, conversation_id)
        return JSONResponse(sim.conversation(conversation.account_id, conversation.display_id))

    @app.get(prefix + "/agents")
    async def list_agents(account_id: str, request: Request) -> Response:
        authenticate(request, bots=False)
        account = account_of(account_id)
        return JSONResponse([sim.shapes.agent_record(a, account) for a in sim.store.agents])

    # --- /_sim control API ----------------------------------------------------------------

    def control(request: Request) -> None:
        if token_kind(request) != "user":
            raise SimHTTPError(401, {"error": "The control API needs the user api_token"})

    def control_ids(account_id: str, conversation_id: str) -> tuple[int, int]:
        conversation = conversation_of(account_id, conversation_id)
        return conversation.account_id, conversation.display_id

    @app.get("/_sim/stats")
    async def sim_stats(request: Request) -> Response:
        control(request)
        return JSONResponse(json.loads(json.dumps(sim.stats())))

    @app.post("/_sim/accounts/{account_id}/conversations")
    async def sim_create(account_id: str, request: Request) -> Response:
        control(request)
        body = await body_of(request)
        status = body.get("status", "pending")
        if status not in STATUSES:
            raise _invalid(f"'{status}' is not a valid status", "status")
        display_id = await sim.create_conversation(
            account_of(account_id), status=status, wait=bool(body.get("wait", True))
        )
        return JSONResponse({"id": display_id})

    @app.post("/_sim/accounts/{account_id}/conversations/{conversation_id}/customer_message")
    async def sim_customer(account_id: str, conversation_id: str, request: Request) -> Response:
        control(request)
        account, display_id = control_ids(account_id, conversation_id)
        body = await body_of(request)
        content = body.get("content")
        attachments = body.get("attachments")
        if content is not None and not isinstance(content, str):
            raise _invalid("Content is invalid", "content")
        if attachments is not None and not isinstance(attachments, list):
            raise _invalid("Attachments must be a list", "attachments")
        message = await sim.customer_message(
            account,
            display_id,
            content,
            attachments=attachments,
            duplicate=bool(body.get("duplicate", False)),
            wait=bool(body.get("wait", True)),
        )
        return JSONResponse(message)

    @app.post("/_sim/accounts/{account_id}/conversations/{conversation_id}/agent_message")
    async def sim_agent(account_id: str, conversation_id: str, request: Request) -> Response:
        control(request)
        account, display_id = control_ids(account_id, conversation_id)
        body = await body_of(request)
        content = body.get("content")
        if not isinstance(content, str) or not content.strip():
            raise _invalid("Content can't be blank", "content")
        message = await sim.agent_message(
            account, display_id, content, private=bool(body.get("private", False))
        )
        return JSONResponse(message)

    @app.post("/_sim/accounts/{account_id}/conversations/{conversation_id}/status")
    async def sim_status(account_id: str, conversation_id: str, request: Request) -> Response:
        control(request)
        account, display_id = control_ids(account_id, conversation_id)
        body = await body_of(request)
        status = body.get("status")
        if not isinstance(status, str) or status not in STATUSES:
            raise _invalid(f"'{status}' is not a valid status", "status")
        await sim.set_status(account, display_id, status)
        return JSONResponse(sim.conversation(account, display_id))

    @app.get("/_sim/accounts/{account_id}/conversations/{conversation_id}/replies")
    async def sim_replies(account_id: str, conversation_id: str, request: Request) -> Response:
        control(request)
        account, display_id = control_ids(account_id, conversation_id)
        return JSONResponse(sim.replies(account, display_id))

    return app
