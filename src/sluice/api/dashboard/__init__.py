"""The live operations dashboard served at ``/dashboard``.

Static assets ship in the package (``static/``, no build step); the page reads JSON from
``/dashboard/api/...`` and a server-sent event stream at ``/dashboard/events``. Mount it with
``app.include_router(sluice.api.dashboard.router)``.
"""

from __future__ import annotations

from sluice.api.dashboard.routes import router

__all__ = ["router"]
