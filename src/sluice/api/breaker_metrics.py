"""The circuit breakers on /metrics: state, transitions and fallback answers per broker.

Read from the breakers' Redis hashes (:func:`sluice.broker.breaker.read_breakers`), the
state every worker process acts on, so one scrape of any API process shows all of them.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sluice.broker.breaker import STATE_VALUES, read_breakers
from sluice.monitor.metric_names import METRICS
from sluice.queue.queue import Queue

_HELP = {m.name: m.help for m in METRICS}


async def breaker_families(queue: Queue) -> list[Metric]:
    """``sluice_breaker_state`` (0 closed, 1 half-open, 2 open),
    ``sluice_breaker_transitions_total{to}`` and ``sluice_breaker_fallback_total``, one
    series per broker that has a breaker; nothing when none has."""
    views = await read_breakers(queue.redis, queue.keys)
    if not views:
        return []
    state = GaugeMetricFamily(
        "sluice_breaker_state", _HELP["sluice_breaker_state"], labels=["queue", "broker"]
    )
    transitions = CounterMetricFamily(
        "sluice_breaker_transitions",
        _HELP["sluice_breaker_transitions_total"],
        labels=["queue", "broker", "to"],
    )
    fallback = CounterMetricFamily(
        "sluice_breaker_fallback",
        _HELP["sluice_breaker_fallback_total"],
        labels=["queue", "broker"],
    )
    for view in views:
        state.add_metric([queue.name, view.broker], STATE_VALUES[view.state])
        for to, count in view.transitions.items():
            transitions.add_metric([queue.name, view.broker, to], float(count))
        fallback.add_metric([queue.name, view.broker], float(view.fallbacks))
    return [state, transitions, fallback]
