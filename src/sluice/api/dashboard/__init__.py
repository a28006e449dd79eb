"""The live operations dashboard served at ``/dashboard``.

Static assets ship in the package (``static/``, no build step); the page reads JSON from
``/dashboard/api/...`` and a server-sent event stream at ``/dashboard/events``. The API
mounts it with ``app.include_router(sluice.api.dashboard.router)``.

One module per concern, so a change to a chart does not touch the login:
:mod:`~sluice.api.dashboard.routes` (the router and its loopback gate),
:mod:`~sluice.api.dashboard.sessions` (login sessions, CSRF), :mod:`~sluice.api.dashboard.pages`
(the HTML shell, login, logout), :mod:`~sluice.api.dashboard.static` (files),
:mod:`~sluice.api.dashboard.summary` (live figures), :mod:`~sluice.api.dashboard.charts`,
:mod:`~sluice.api.dashboard.jobs` (search, dead letters), :mod:`~sluice.api.dashboard.alerts`,
:mod:`~sluice.api.dashboard.controls` (pause, drain, live settings) and
:mod:`~sluice.api.dashboard.events` (the event stream).
"""

from __future__ import annotations

from sluice.api.dashboard.routes import router

__all__ = ["router"]
