"""The /metrics families of tenant fairness (docs/fairness.md).

Per-account series are bounded: the busiest :data:`~sluice.queue.fairness.TOP_ACCOUNTS`
accounts (turns in flight, then lanes held back, then decisions) are named, the rest are
summed under ``account="other"``, so a flood of account ids adds at most that many series.
An inbox seen at its cap is named ``account="<account>/<inbox>"``. An account that drops
out of the top moves its counts to ``other``; the exact totals are
``sluice_fairness_decisions_total``, which has no account label.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from sluice.monitor.metric_names import METRICS
from sluice.queue.fairness import FairnessSnapshot
from sluice.queue.queue import Queue

_HELP = {m.name: m.help for m in METRICS}


async def fairness_families(queue: Queue) -> list[Metric]:
    """Caps, decisions, and the busiest accounts' turns in flight and lanes held back."""
    return families(queue.name, await queue.fairness())


def families(name: str, snap: FairnessSnapshot) -> list[Metric]:
    caps = GaugeMetricFamily(
        "sluice_fairness_cap", _HELP["sluice_fairness_cap"], labels=["queue", "cap"]
    )
    caps.add_metric([name, "concurrency"], snap.caps.concurrency)
    caps.add_metric([name, "rate"], snap.caps.rate)
    caps.add_metric([name, "inbox_concurrency"], snap.caps.inbox_concurrency)
    caps.add_metric([name, "inbox_rate"], snap.caps.inbox_rate)
    decisions = CounterMetricFamily(
        "sluice_fairness_decisions",
        _HELP["sluice_fairness_decisions_total"],
        labels=["queue", "decision"],
    )
    decisions.add_metric([name, "capped_concurrency"], snap.capped_concurrency)
    decisions.add_metric([name, "capped_rate"], snap.capped_rate)
    decisions.add_metric([name, "lent"], snap.lent)
    active = GaugeMetricFamily(
        "sluice_account_active", _HELP["sluice_account_active"], labels=["queue", "account"]
    )
    held = GaugeMetricFamily(
        "sluice_account_held", _HELP["sluice_account_held"], labels=["queue", "account"]
    )
    capped = CounterMetricFamily(
        "sluice_account_capped",
        _HELP["sluice_account_capped_total"],
        labels=["queue", "account"],
    )
    for a in [*snap.accounts, snap.other]:
        active.add_metric([name, a.account], a.active)
        held.add_metric([name, a.account], a.held)
        capped.add_metric([name, a.account], a.capped)
    return [caps, decisions, active, held, capped]
