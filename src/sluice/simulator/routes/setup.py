"""Setting a receiver up: the version probe, the token's profile, inboxes, agent bots (create,
list, link to an inbox) and account webhooks (create, list, update). What ``sluice chatwoot
setup`` and ``sluice validate`` call.

Real behaviour followed (Chatwoot's source; facts §4 and §9):

- ``GET /api`` is ``ApiController#index``: ``{version, timestamp}`` without authentication
  (``Chatwoot.config[:version]``). Here the version is the profile's (``"4.11"`` reports
  4.11.2, the others ``.0``).
- ``GET /api/v1/profile`` is ``ProfilesController#show`` rendering ``api/v1/models/_user``:
  the user, their own ``access_token`` and ``accounts[]`` with each role. Not in
  ``BOT_ACCESSIBLE_ENDPOINTS``: a bot token gets 401.
- Account routes check the token, the bot allow-list (none of these are in it), the account
  (``Account.find``: 404), then Pundit: ``AgentBotPolicy`` (index, create), ``WebhookPolicy``
  (every action) and ``InboxPolicy#set_agent_bot?`` are administrator-only, and a refusal is
  401 "You are not authorized to do this action" (``RequestExceptionHandler``), not 403.
- ``AgentBotsController#index`` lists global bots and the account's; ``create`` permits
  ``name description outgoing_url bot_type bot_config``. The bot JSON carries ``secret`` for
  administrators from 4.13 (#13892) and ``access_token`` for administrators since #14830
  (merged 2026-07; modelled from 4.16).
- ``InboxesController#agent_bot`` renders ``{"agent_bot": ...}`` (any member);
  ``set_agent_bot`` takes ``{"agent_bot": id | null}`` (``AgentBot.find``: 404 for an unknown
  id), creates or updates the inbox's ``AgentBotInbox`` and answers an empty 200.
- ``WebhooksController``: index ``{"payload": {"webhooks": [...]}}``, create and update
  ``{"payload": {"webhook": ...}}``; ``params.require(:webhook)`` (422 "param is missing or the
  value is empty: webhook"); the URL must be http(s) and unique per account; subscriptions a
  non-empty subset of ``ALLOWED_WEBHOOK_EVENTS`` ("Subscriptions Invalid events"); ``secret``
  from 4.11.2 (#13573).

The simulator's own receiver (``SimulatorConfig``: ``bot_id`` linked to every inbox when
``inbox_has_bot``, and in ``account_webhook`` mode a webhook of ``webhook_url`` in every
account) is listed like any other. Known deviation: what is created or linked here is only
recorded; deliveries keep following ``SimulatorConfig`` (``mode``, ``webhook_url``).
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from sluice.simulator.routes.common import PREFIX, Api, SimHTTPError, as_int, invalid
from sluice.simulator.state import Principal
from sluice.simulator.versions import ACCOUNT_EVENTS

PUNDIT_REFUSED = {"error": "You are not authorized to do this action"}
NOT_FOUND = {"error": "Resource could not be found"}


def _since(version: str, first: str) -> bool:
    def parse(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("."))

    return parse(version) >= parse(first)


def reported_version(profile_version: str) -> str:
    """What ``GET /api`` says for a profile: ``"4.11"`` stands for 4.11.2 (signing)."""
    return "4.11.2" if profile_version == "4.11" else f"{profile_version}.0"


@dataclass
class SetupState:
    """What was registered through the API (the configured receiver is derived from the
    config at each request, as the harness may change it while serving)."""

    bots: dict[int, dict[str, Any]] = field(default_factory=dict)
    links: dict[int, int | None] = field(default_factory=dict)  # inbox id -> bot id
    webhooks: dict[int, dict[str, Any]] = field(default_factory=dict)
    bot_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    webhook_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def register(app: FastAPI, api: Api) -> None:
    sim = api.sim
    state = SetupState()
    app.state.chatwoot_setup = state  # for tests that look behind the API
    state.bot_ids = itertools.count(sim.config.bot_id + 1)
    state.webhook_ids = itertools.count(len(sim.store.accounts) + 1)

    # --- the configured receiver, as Chatwoot would list it ---------------------------------

    def configured_bot() -> dict[str, Any]:
        bot_mode = sim.config.mode == "agent_bot"
        return {
            "id": sim.config.bot_id,
            "account_id": None,  # global, like agent_bot_slim's
            "name": sim.config.bot_name,
            "description": "",
            "outgoing_url": sim.config.webhook_url if bot_mode else None,
            "secret": sim.config.webhook_secret if bot_mode else None,
            "access_token": sim.config.bot_token,
        }

    def bots_of(account_id: int) -> list[dict[str, Any]]:
        own = [b for b in state.bots.values() if b["account_id"] in (None, account_id)]
        return [configured_bot(), *own]

    def bot(bot_id: int | None) -> dict[str, Any] | None:
        if bot_id == sim.config.bot_id:
            return configured_bot()
        return state.bots.get(bot_id) if bot_id is not None else None

    def linked(inbox_id: int) -> int | None:
        if inbox_id in state.links:
            return state.links[inbox_id]
        return sim.config.bot_id if sim.config.inbox_has_bot else None

    def configured_webhook_id(account_id: int) -> int:
        return list(sim.store.accounts).index(account_id) + 1

    def webhooks_of(account_id: int) -> list[dict[str, Any]]:
        found = []
        configured = configured_webhook_id(account_id)
        if configured in state.webhooks:  # updated through the API
            found.append(state.webhooks[configured])
        elif sim.config.mode == "account_webhook" and sim.config.webhook_url:
            found.append(
                {
                    "id": configured,
                    "account_id": account_id,
                    "name": None,
                    "url": sim.config.webhook_url,
                    "subscriptions": sorted(sim.config.webhook_subscriptions or ACCOUNT_EVENTS),
                    "inbox_id": None,
                    "secret": sim.config.webhook_secret,
                }
            )
        found += [
            w
            for w in state.webhooks.values()
            if w["account_id"] == account_id and w["id"] != configured
        ]
        return found

    # --- rendering ------------------------------------------------------------------------

    def bot_json(record: dict[str, Any], principal: Principal) -> dict[str, Any]:
        version = sim.profile.version
        data = {
            "id": record["id"],
            "name": record["name"],
            "description": record["description"],
            "thumbnail": "",
            "outgoing_url": record["outgoing_url"],
            "bot_type": "webhook",
            "bot_config": {},
            "account_id": record["account_id"],
            "system_bot": record["account_id"] is None,
        }
        if principal.role == "administrator":
            if sim.profile.bot_webhooks_signed:  # the bot's secret column, #13892
                data["secret"] = record["secret"]
            if _since(version, "4.16"):  # #14830 (merged 2026-07)
                data["access_token"] = record["access_token"]
        return data

    def webhook_json(record: dict[str, Any]) -> dict[str, Any]:
        data = {
            "id": record["id"],
            "name": record["name"],
            "url": record["url"],
            "account_id": record["account_id"],
            "subscriptions": list(record["subscriptions"]),
        }
        inbox_id = record.get("inbox_id")
        account = sim.store.accounts[record["account_id"]]
        if inbox_id == account.inbox_id:
            data["inbox"] = {
                "id": account.inbox_id,
                "name": account.inbox_name,
                "channel_type": "Channel::WebWidget",
            }
        if sim.profile.account_webhooks_signed:  # the webhook's secret column, #13573
            data["secret"] = record["secret"]
        return data

    def inbox_json(account_id: int) -> dict[str, Any]:
        # A subset of api/v1/models/_inbox: the web widget every simulated account has.
        account = sim.store.accounts[account_id]
        return {
            "id": account.inbox_id,
            "name": account.inbox_name,
            "channel_id": account.inbox_id,
            "channel_type": "Channel::WebWidget",
            "avatar_url": "",
            "greeting_enabled": False,
            "greeting_message": None,
            "enable_auto_assignment": True,
            "working_hours_enabled": account.working_hours_enabled,
            "working_hours": [dict(day) for day in account.working_hours],
            "timezone": account.timezone,
            "website_url": "https://shop.simulator.invalid",
            "widget_color": "#1f93ff",
        }

    # --- auth -----------------------------------------------------------------------------

    def member(request: Request, raw_account: str, controller: str, action: str) -> Principal:
        principal = api.authenticate(request, controller, action)
        api.account_of(raw_account)
        return principal

    def administrator(principal: Principal) -> None:
        if principal.role != "administrator":
            raise SimHTTPError(401, PUNDIT_REFUSED)

    def inbox_of(account_id: int, raw: str) -> int:
        inbox_id = as_int(raw)
        if inbox_id is None or inbox_id != sim.store.accounts[account_id].inbox_id:
            raise SimHTTPError(404, NOT_FOUND)
        return inbox_id

    def valid_url(value: object) -> bool:
        if not isinstance(value, str):
            return False
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.netloc)

    # --- routes ---------------------------------------------------------------------------

    @app.get("/api")
    async def version() -> Response:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sim.clock()))
        return JSONResponse({"version": reported_version(sim.profile.version), "timestamp": stamp})

    @app.get("/api/v1/profile")
    async def profile(request: Request) -> Response:
        principal = api.authenticate(request, "profiles", "show")
        assert principal.user_id is not None
        agent = sim.store.agents[principal.user_id]
        name = str(agent.get("name", ""))
        role = agent.get("role", "agent")
        accounts = [
            {
                "id": account.id,
                "name": account.name,
                "status": "active",
                "active_at": None,
                "role": role,
                "permissions": [role],
                "availability": agent.get("availability_status", "online"),
                "availability_status": sim.shapes.availability(principal.user_id),
                "auto_offline": True,
            }
            for account in sim.store.accounts.values()
        ]
        return JSONResponse(
            {
                "access_token": request.headers.get("api_access_token")
                or request.headers.get("api-access-token"),
                "account_id": accounts[0]["id"],
                "available_name": name.split(" ")[0] if name else name,
                "avatar_url": "",
                "confirmed": True,
                "display_name": None,
                "message_signature": None,
                "email": agent.get("email"),
                "id": principal.user_id,
                "inviter_id": None,
                "name": name,
                "provider": "email",
                "pubsub_token": f"pubsub-{principal.user_id}",
                "role": role,
                "ui_settings": {},
                "uid": agent.get("email"),
                "type": "User",
                "accounts": accounts,
            }
        )

    @app.get(PREFIX + "/inboxes")
    async def list_inboxes(account_id: str, request: Request) -> Response:
        member(request, account_id, "inboxes", "index")
        return JSONResponse({"payload": [inbox_json(api.account_of(account_id))]})

    @app.get(PREFIX + "/inboxes/{inbox_id}")
    async def show_inbox(account_id: str, inbox_id: str, request: Request) -> Response:
        # InboxesController#show renders api/v1/models/_inbox (no payload wrapper).
        member(request, account_id, "inboxes", "show")
        account = api.account_of(account_id)
        inbox_of(account, inbox_id)
        return JSONResponse(inbox_json(account))

    @app.get(PREFIX + "/inboxes/{inbox_id}/agent_bot")
    async def inbox_agent_bot(account_id: str, inbox_id: str, request: Request) -> Response:
        principal = member(request, account_id, "inboxes", "agent_bot")
        inbox = inbox_of(api.account_of(account_id), inbox_id)
        record = bot(linked(inbox))
        return JSONResponse({"agent_bot": bot_json(record, principal) if record else {}})

    @app.post(PREFIX + "/inboxes/{inbox_id}/set_agent_bot")
    async def set_agent_bot(account_id: str, inbox_id: str, request: Request) -> Response:
        principal = member(request, account_id, "inboxes", "set_agent_bot")
        inbox = inbox_of(api.account_of(account_id), inbox_id)
        body = await api.body_of(request)
        wanted = body.get("agent_bot")
        if wanted is not None:
            bot_id = as_int(wanted)
            if bot(bot_id) is None:  # AgentBot.find, before authorization
                raise SimHTTPError(404, NOT_FOUND)
        administrator(principal)
        state.links[inbox] = as_int(wanted) if wanted is not None else None
        return Response(status_code=200)

    @app.get(PREFIX + "/agent_bots")
    async def list_bots(account_id: str, request: Request) -> Response:
        principal = member(request, account_id, "agent_bots", "index")
        administrator(principal)
        account = api.account_of(account_id)
        return JSONResponse([bot_json(b, principal) for b in bots_of(account)])

    @app.post(PREFIX + "/agent_bots")
    async def create_bot(account_id: str, request: Request) -> Response:
        principal = member(request, account_id, "agent_bots", "create")
        administrator(principal)
        account = api.account_of(account_id)
        body = await api.body_of(request)
        record: dict[str, Any] = {
            "id": next(state.bot_ids),
            "account_id": account,
            "name": body.get("name"),
            "description": body.get("description"),
            "outgoing_url": body.get("outgoing_url"),
            "secret": secrets.token_urlsafe(24),
            "access_token": secrets.token_urlsafe(24),
        }
        state.bots[record["id"]] = record
        return JSONResponse(bot_json(record, principal))

    @app.get(PREFIX + "/webhooks")
    async def list_webhooks(account_id: str, request: Request) -> Response:
        administrator(member(request, account_id, "webhooks", "index"))
        account = api.account_of(account_id)
        webhooks = [webhook_json(w) for w in webhooks_of(account)]
        return JSONResponse({"payload": {"webhooks": webhooks}})

    def validated(account: int, params: dict[str, Any], webhook_id: int | None) -> None:
        url = params.get("url")
        if not valid_url(url):
            raise invalid("Url is invalid", "url")
        taken = any(w["url"] == url and w["id"] != webhook_id for w in webhooks_of(account))
        if taken:
            raise invalid("Url has already been taken", "url")
        subscriptions = params.get("subscriptions")
        if (
            not isinstance(subscriptions, list)
            or not subscriptions
            or not set(subscriptions) <= ACCOUNT_EVENTS
        ):
            raise invalid("Subscriptions Invalid events", "subscriptions")

    async def webhook_params(request: Request) -> dict[str, Any]:
        body = await api.body_of(request)
        params = body.get("webhook")
        if not isinstance(params, dict) or not params:
            raise SimHTTPError(422, {"error": "param is missing or the value is empty: webhook"})
        return params

    @app.post(PREFIX + "/webhooks")
    async def create_webhook(account_id: str, request: Request) -> Response:
        administrator(member(request, account_id, "webhooks", "create"))
        account = api.account_of(account_id)
        params = await webhook_params(request)
        validated(account, params, None)
        record: dict[str, Any] = {
            "id": next(state.webhook_ids),
            "account_id": account,
            "name": params.get("name"),
            "url": params["url"],
            "subscriptions": list(dict.fromkeys(params["subscriptions"])),
            "inbox_id": as_int(params.get("inbox_id")),
            "secret": secrets.token_urlsafe(24),
        }
        state.webhooks[record["id"]] = record
        return JSONResponse({"payload": {"webhook": webhook_json(record)}})

    @app.api_route(PREFIX + "/webhooks/{webhook_id}", methods=["PATCH", "PUT"])
    async def update_webhook(account_id: str, webhook_id: str, request: Request) -> Response:
        administrator(member(request, account_id, "webhooks", "update"))
        account = api.account_of(account_id)
        wanted = as_int(webhook_id)
        record = next((w for w in webhooks_of(account) if w["id"] == wanted), None)
        if record is None:
            raise SimHTTPError(404, NOT_FOUND)
        params = await webhook_params(request)
        merged = {**record, **{k: v for k, v in params.items() if k in ("url", "subscriptions")}}
        if "name" in params:
            merged["name"] = params["name"]
        validated(account, merged, record["id"])
        merged["subscriptions"] = list(dict.fromkeys(merged["subscriptions"]))
        state.webhooks[record["id"]] = merged
        return JSONResponse({"payload": {"webhook": webhook_json(merged)}})
