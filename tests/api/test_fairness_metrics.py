"""Tenant fairness in /metrics: caps, decisions, and per-account series with bounded labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from sluice.monitor.metric_names import exposed_series_names
from sluice.queue.fairness import TOP_ACCOUNTS, FairnessCaps

from .conftest import Api


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, float(s.value))
        for f in text_string_to_metric_families(text)
        for s in f.samples
    ]


async def test_fairness_series_name_the_busiest_accounts_and_sum_the_rest(api: Api) -> None:
    await api.queue.set_fairness(FairnessCaps(concurrency=1, rate=2.5))
    # Account 1 floods (its second and third lanes are held back behind the others), and
    # more accounts than TOP_ACCOUNTS have a turn in flight.
    for n in range(3):
        await api.queue.enqueue(f"1:{n}", {})
    for account in range(100, 100 + TOP_ACCOUNTS + 5):
        await api.queue.enqueue(f"{account}:x", {})
    taken = await api.queue.reserve(TOP_ACCOUNTS + 6, worker_id="w")
    assert len(taken.jobs) == TOP_ACCOUNTS + 6
    text = (await api.client.get("/metrics")).text
    got = samples(text)
    assert {name for name, _, _ in got} <= exposed_series_names()
    queue = api.queue.name

    def value(name: str, **labels: str) -> float:
        for n, lab, v in got:
            if n == name and all(lab.get(k) == x for k, x in labels.items()):
                return v
        raise AssertionError(f"no sample {name} {labels}")

    assert value("sluice_fairness_cap", queue=queue, cap="concurrency") == 1
    assert value("sluice_fairness_cap", queue=queue, cap="rate") == 2.5
    assert value("sluice_fairness_decisions_total", queue=queue, decision="capped_concurrency") == 2
    assert value("sluice_account_held", queue=queue, account="1") == 2
    assert value("sluice_account_capped_total", queue=queue, account="1") == 2
    accounts = {lab["account"] for n, lab, _ in got if n == "sluice_account_active"}
    assert len(accounts) == TOP_ACCOUNTS + 1 and "other" in accounts  # bounded
    total_active = sum(v for n, _, v in got if n == "sluice_account_active")
    assert total_active == TOP_ACCOUNTS + 6


async def test_fairness_off_exports_zero_caps(api: Api) -> None:
    got = samples((await api.client.get("/metrics")).text)
    caps = {lab["cap"]: v for n, lab, v in got if n == "sluice_fairness_cap"}
    assert caps == {"concurrency": 0.0, "rate": 0.0, "inbox_concurrency": 0.0, "inbox_rate": 0.0}
