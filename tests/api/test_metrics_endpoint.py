"""/metrics scraped over HTTP and parsed with Prometheus's own parser."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from sluice import Completion
from sluice.monitor.metric_names import exposed_series_names

from .conftest import Api


async def test_scrape_parses_and_uses_only_declared_names(api: Api) -> None:
    now = time.time() * 1000
    for n, sla in enumerate((2_000, 12_000, 40_000)):
        await api.queue.enqueue(f"c{n}", {}, hops={"source_created": now - sla, "received": now})
    jobs = (await api.queue.reserve(3, worker_id="w")).jobs
    await api.queue.complete(
        [Completion(j.id, j.token, {"reply_sent": now}) for j in jobs], worker_id="w"
    )
    await api.queue.enqueue("waiting", {})
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    series = {s.name for f in families.values() for s in f.samples}
    assert series <= exposed_series_names(), series - exposed_series_names()

    def sample(name: str, **labels: str) -> float:
        for fam in families.values():
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        raise AssertionError(f"no sample {name} {labels}")

    queue = api.queue.name
    assert sample("sluice_jobs_completed_total", queue=queue) == 3
    assert sample("sluice_jobs_enqueued_total", queue=queue) == 4
    assert sample("sluice_queue_jobs", queue=queue, state="waiting") == 1
    bounds = {
        s.labels["le"]
        for s in families["sluice_sla_duration_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert {"5.0", "10.0", "30.0", "+Inf"} <= bounds
    assert sample("sluice_sla_duration_seconds_bucket", queue=queue, le="10.0") == 1
    assert sample("sluice_sla_duration_seconds_bucket", queue=queue, le="30.0") == 2
    assert sample("sluice_sla_duration_seconds_count", queue=queue) == 3
    assert sample("sluice_sla_verdicts_total", queue=queue, verdict="critical") == 1
