"""OpenTelemetry traces: one trace per customer message, from the webhook to the acknowledged
reply (docs/tracing.md has the span tree, the attributes and the variables).

Off unless the standard ``OTEL_*`` environment asks for an exporter
(:func:`configure_tracing`, called once by ``sluice serve``, ``sluice worker`` and
``sluice up``), and then free: every place that would make a span first reads
:data:`enabled`, a module global, and with it False makes no span, reads no context and
carries none, so jobs hold no trace field and no Redis call grows by a byte.

* :mod:`~sluice.tracing.setup`: the environment, the SDK's provider, its shutdown, the
  test hook (:func:`install`);
* :mod:`~sluice.tracing.spans`: the tracer and the trace context carried in a job (W3C
  ``traceparent``);
* :mod:`~sluice.tracing.messaging`: the engine's spans (send, queue wait, process), after
  the OpenTelemetry messaging conventions;
* :mod:`~sluice.tracing.service`: the Chatwoot service's spans (the webhook, the spool's
  replay, the turn, the broker call, Chatwoot's HTTP calls).

This package sits with ``settings`` and ``errors`` at the floor: it imports no other Sluice
package but :mod:`sluice.errors`, so the engine may use it.
"""

from __future__ import annotations

#: Whether spans are made in this process. Set only by :mod:`sluice.tracing.setup`; read on
#: the hot path as ``tracing.enabled`` (never ``from sluice.tracing import enabled``, which
#: would keep the value it had at import).
enabled: bool = False

from sluice.tracing.setup import (  # noqa: E402 (the flag first: setup sets it)
    configure_tracing,
    exporters_wanted,
    install,
    shutdown_tracing,
)

__all__ = ["configure_tracing", "enabled", "exporters_wanted", "install", "shutdown_tracing"]
