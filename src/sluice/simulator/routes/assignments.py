"""``POST /conversations/{id}/assignments`` (AssignmentsController, facts §5)."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from sluice.simulator.routes.common import CONVERSATION, Api, as_int


def register(app: FastAPI, api: Api) -> None:
    sim = api.sim

    @app.post(CONVERSATION + "/assignments")
    async def assign(account_id: str, conversation_id: str, request: Request) -> Response:
        api.authenticate(request, "assignments", "create")
        conversation = api.conversation_of(account_id, conversation_id)
        body = await api.body_of(request)
        if body.get("assignee_type") == "AgentBot":
            # assignee_type "AgentBot" + assignee_id: a bot of the account (or global);
            # an unknown id unassigns. Response: agent_bot_slim, or null.
            wanted = as_int(body.get("assignee_id"))
            bot_id = sim.config.bot_id if wanted == sim.config.bot_id else None
            await sim.emit(sim.changes.assign_bot(conversation, bot_id), wait=False)
            return JSONResponse(sim.shapes.bot_slim() if bot_id is not None else None)
        if "assignee_id" in body:
            # params.key?(:assignee_id) wins: team_id is ignored in this request.
            wanted = as_int(body["assignee_id"])
            # An unknown (or null) agent id unassigns and answers null.
            agent_id = wanted if wanted in sim.store.agents else None
            await sim.emit(sim.changes.assign_user(conversation, agent_id), wait=False)
            if agent_id is None:
                return JSONResponse(None)
            return JSONResponse(sim.shapes.agent_record(agent_id, conversation.account_id))
        if "team_id" in body:
            team_id = as_int(body["team_id"])
            await sim.emit(sim.changes.save(conversation, team_id=team_id), wait=False)
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
        return JSONResponse(None)  # neither key: renders null
