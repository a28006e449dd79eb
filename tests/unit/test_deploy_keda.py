"""deploy/keda/: the KEDA ScaledObject, the HPA example and the prometheus-adapter rule
point at what Sluice really serves (the route, the JSON field, the metric name), and carry
the fields their APIs require."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sluice.api import scaling
from sluice.api.factory import create_app
from sluice.monitor.metric_names import METRIC_NAMES
from sluice.settings.config import load_settings

KEDA_DIR = Path(__file__).resolve().parents[2] / "deploy" / "keda"


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((KEDA_DIR / name).read_text()) if d]


def served_paths() -> set[str]:
    app = create_app(load_settings({"SLUICE_ADMIN_TOKEN": "x" * 32}), "redis://127.0.0.1:1/0")
    return set(app.openapi()["paths"])  # every route the app serves, however included


def test_scaledobject_reads_the_keda_route_with_the_admin_token() -> None:
    by_kind = {d["kind"]: d for d in documents("scaledobject.yaml")}
    assert set(by_kind) == {"TriggerAuthentication", "ScaledObject"}
    auth, scaled = by_kind["TriggerAuthentication"], by_kind["ScaledObject"]
    for doc in (auth, scaled):
        assert doc["apiVersion"] == "keda.sh/v1alpha1" and doc["metadata"]["name"]
    assert auth["spec"]["secretTargetRef"][0]["parameter"] == "token"  # bearer mode's name
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "sluice-worker"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["fallback"]["replicas"] >= spec["minReplicaCount"]
    # No recommendation, or a stale one (404): keep the workers running, as
    # `--processes auto` does, rather than dropping to the fallback count mid-burst.
    assert spec["fallback"]["behavior"] == "currentReplicasIfHigher"
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "metrics-api"
    assert trigger["metricType"] == "AverageValue"  # KEDA's fallback needs it
    meta = trigger["metadata"]
    assert meta["url"].endswith(scaling.KEDA_PATH)
    assert scaling.KEDA_PATH in served_paths()
    assert meta["valueLocation"] == scaling.KEDA_VALUE_LOCATION
    assert float(meta["targetValue"]) == 1.0
    assert meta["authMode"] == "bearer"
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]


def test_hpa_and_adapter_use_the_exported_metric() -> None:
    (hpa,) = documents("hpa-external.yaml")
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["kind"] == "HorizontalPodAutoscaler"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "sluice-worker",
    }
    assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
    (metric,) = spec["metrics"]
    assert metric["type"] == "External"
    name = metric["external"]["metric"]["name"]
    assert name == "sluice_scaling_desired_workers" and name in METRIC_NAMES
    assert set(metric["external"]["metric"]["selector"]["matchLabels"]) == {"queue"}
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}
    (adapter,) = documents("prometheus-adapter.yaml")
    (rule,) = adapter["rules"]["external"]
    assert name in rule["seriesQuery"] and rule["name"]["as"] == name
    assert "max(" in rule["metricsQuery"]
