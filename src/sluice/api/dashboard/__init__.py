"""The live operations dashboard served at ``/dashboard``.

Static assets ship in the package (``static/``, no build step); the page reads JSON from
``/dashboard/api/...`` and a server-sent event stream at ``/dashboard/events``. The API
mounts it with ``app.include_router(sluice.api.dashboard.router)``.

One module per concern, so a change to a chart does not touch the login:

* :mod:`~sluice.api.dashboard.routes`: the router, its parts behind one loopback gate
* :mod:`~sluice.api.dashboard.sessions`: login sessions and CSRF protection
* :mod:`~sluice.api.dashboard.pages`: the HTML shell, login and logout
* :mod:`~sluice.api.dashboard.assets`: the files of ``static/``
* :mod:`~sluice.api.dashboard.summary`: the live figures
* :mod:`~sluice.api.dashboard.charts`: the chart series and the time breakdown
* :mod:`~sluice.api.dashboard.jobs`: search, a job's timeline, dead letters
* :mod:`~sluice.api.dashboard.alerts`: alerts, ack and silence
* :mod:`~sluice.api.dashboard.controls`: pause, resume, drain, live settings, profile
* :mod:`~sluice.api.dashboard.events`: the server-sent event stream
* :mod:`~sluice.api.dashboard.breakers`: each broker's circuit breaker, the bulk replay of
  dead letters by filter
"""

from __future__ import annotations

from sluice.api.dashboard.routes import router

__all__ = ["router"]
