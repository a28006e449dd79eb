"""Deadlines on the dashboard: which switches are on and what set the messages' deadlines.

The counts are the ones behind ``sluice_deadline_source_total`` (the intake writes them,
:mod:`sluice.service.enqueue`); each job's own source is on its timeline (the note
``deadline``). See docs/priorities.md.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sluice.api.dashboard.sessions import Session
from sluice.api.state import app_state

router = APIRouter()


@router.get("/api/deadlines")
async def deadlines(request: Request, _: Session) -> dict[str, Any]:
    st = app_state(request.app)
    settings = st.settings
    raw = await st.queue.redis.hgetall(st.queue.keys.deadline_sources)
    counts = {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
    return {
        "switches": {
            "priority_from_chatwoot": settings.priority_from_chatwoot,
            "waiting_since": settings.deadline_from_waiting_since,
            "sla": settings.deadline_from_sla,
            "rules_file": settings.priority_rules,
        },
        "sources": [
            {"source": source, "messages": n}
            for source, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
    }
