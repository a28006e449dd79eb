"""The HTTP API: probes, health document, admin controls, metrics, the Chatwoot webhook and
the operations dashboard.

Dependencies point one way, so that any part can be imported (and tested) on its own:
:mod:`sluice.api.factory` assembles the application from the other modules' routers, and
nothing imports it back. The pieces every router shares, the process state
(:mod:`sluice.api.state`) and access control (:mod:`sluice.api.auth`), import no router.
The dashboard is a sub-package because only the API serves it; it uses those shared pieces
like any other router.
"""
