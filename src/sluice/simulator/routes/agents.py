"""``GET /agents`` (AgentsController#index, facts §7): user tokens only."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from sluice.simulator.routes.common import PREFIX, Api


def register(app: FastAPI, api: Api) -> None:
    sim = api.sim

    @app.get(PREFIX + "/agents")
    async def list_agents(account_id: str, request: Request) -> Response:
        # Not in BOT_ACCESSIBLE_ENDPOINTS: a bot token gets 401.
        api.authenticate(request, "agents", "index")
        account = api.account_of(account_id)
        # Known deviation: Chatwoot orders by full name; the configured order is kept here
        # (existing tests expect it). availability_status: offline without a live session.
        return JSONResponse([sim.shapes.agent_record(a, account) for a in sim.store.agents])
