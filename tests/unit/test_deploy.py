"""deploy/: the Prometheus rules, scrape config and Grafana dashboard match what Sluice exposes.

Metric and label names are checked against src/sluice/monitor/metric_names.py, so a
renamed metric or label breaks here instead of silently emptying an alert or a panel.
When `promtool` is on PATH (Debian package `prometheus`) the files also go through
Prometheus's own parser and the alert unit tests in deploy/prometheus/tests/ run; with
`amtool` (package `prometheus-alertmanager`) deploy/alertmanager/alertmanager.yml is checked
too. tests/reliability/test_prometheus_alertmanager.py runs both files for real.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.monitor.metric_names import METRICS, exposed_series_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "sluice-alerts.yml"
RECORDING = PROMETHEUS_DIR / "recording-rules.yml"
RULE_FILES = (ALERTS, RECORDING)
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "sluice-alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "sluice-dashboard.json"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

SEVERITIES = frozenset({"warning", "critical"})
REQUIRED_ANNOTATIONS = ("summary", "description", "runbook")

# Prometheus's duration syntax (model.ParseDuration): units in descending order.
_DURATION = re.compile(r"(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?")
_RECORD_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_ALERT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")

_STRING = r'"(?:[^"\\]|\\.)*"'
_SLUICE_SERIES = re.compile(r"(?<![A-Za-z0-9_:])sluice_[a-z0-9_]+(?![A-Za-z0-9_:])")
_RECORDED_SERIES = re.compile(r"(?<![A-Za-z0-9_:])sluice:[a-z0-9_:]+(?![A-Za-z0-9_:])")
_SELECTOR = re.compile(rf"(?<![A-Za-z0-9_:])(sluice_[a-z0-9_]+)\s*\{{((?:[^}}\"]|{_STRING})*)\}}")
_MATCHER = re.compile(rf"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*({_STRING})\s*,?")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def _series_labels() -> dict[str, frozenset[str]]:
    """Every exposed series name -> the label names it may carry."""
    labels: dict[str, frozenset[str]] = {}
    for metric in METRICS:
        if metric.kind == "histogram":
            labels[f"{metric.name}_bucket"] = frozenset({*metric.labels, "le"})
            labels[f"{metric.name}_sum"] = frozenset(metric.labels)
            labels[f"{metric.name}_count"] = frozenset(metric.labels)
        else:
            labels[metric.name] = frozenset(metric.labels)
    return labels


SERIES_LABELS = _series_labels()


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _rules(doc: Any) -> Iterator[dict[str, Any]]:
    for group in doc["groups"]:
        yield from group["rules"]


def _rule_id(rule: dict[str, Any]) -> str:
    return str(rule.get("alert") or rule.get("record"))


def rule_file_problems(doc: Any) -> list[str]:
    """The structural problems of a Prometheus rule file (empty when it is well formed)."""
    if not isinstance(doc, dict) or set(doc) != {"groups"}:
        return ["the top level must be a mapping with exactly one key, groups"]
    groups = doc["groups"]
    if not isinstance(groups, list) or not groups:
        return ["groups must be a non-empty list"]
    problems: list[str] = []
    group_names: set[str] = set()
    alert_names: set[str] = set()
    for g, group in enumerate(groups):
        where = f"groups[{g}]"
        if not isinstance(group, dict):
            problems.append(f"{where}: not a mapping")
            continue
        unknown = set(group) - {"name", "interval", "rules", "limit", "query_offset"}
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        name = group.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: name must be a non-empty string")
        elif name in group_names:
            problems.append(f"{where}: duplicate group name {name!r}")
        else:
            group_names.add(name)
        interval = group.get("interval")
        if interval is not None and not _is_duration(interval):
            problems.append(f"{where}: interval {interval!r} is not a duration")
        rules = group.get("rules")
        if not isinstance(rules, list) or not rules:
            problems.append(f"{where}: rules must be a non-empty list")
            continue
        for r, rule in enumerate(rules):
            problems.extend(_rule_problems(f"{where}.rules[{r}]", rule, alert_names))
    return problems


def _is_duration(value: Any) -> bool:
    return isinstance(value, str) and value != "" and _DURATION.fullmatch(value) is not None


def _rule_problems(where: str, rule: Any, alert_names: set[str]) -> list[str]:
    if not isinstance(rule, dict):
        return [f"{where}: not a mapping"]
    problems: list[str] = []
    unknown = set(rule) - {
        *("alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations")
    }
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    if ("alert" in rule) == ("record" in rule):
        return [*problems, f"{where}: needs exactly one of alert and record"]
    expr = rule.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        problems.append(f"{where}: expr must be a non-empty string")
    labels = rule.get("labels", {})
    if not isinstance(labels, dict):
        problems.append(f"{where}: labels must be a mapping")
        labels = {}
    if "record" in rule:
        record = rule["record"]
        if not isinstance(record, str) or not _RECORD_NAME.fullmatch(record):
            problems.append(f"{where}: record {record!r} is not a valid metric name")
        for key in ("for", "keep_firing_for", "annotations"):
            if key in rule:
                problems.append(f"{where}: a recording rule cannot have {key}")
        return problems
    alert = rule["alert"]
    if not isinstance(alert, str) or not _ALERT_NAME.fullmatch(alert):
        problems.append(f"{where}: alert {alert!r} is not a CamelCase name")
    elif alert in alert_names:
        problems.append(f"{where}: duplicate alert {alert!r}")
    else:
        alert_names.add(alert)
    if not _is_duration(rule.get("for")):
        problems.append(f"{where}: for {rule.get('for')!r} must be a duration like 5m")
    if labels.get("severity") not in SEVERITIES:
        problems.append(f"{where}: labels.severity must be one of {sorted(SEVERITIES)}")
    annotations = rule.get("annotations")
    if not isinstance(annotations, dict):
        return [*problems, f"{where}: annotations must be a mapping"]
    for key in REQUIRED_ANNOTATIONS:
        value = annotations.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: annotations.{key} must be a non-empty string")
    return problems


def expr_problems(expr: str, recorded: frozenset[str] = frozenset()) -> list[str]:
    """Names and labels in a PromQL expression that Sluice does not expose."""
    problems: list[str] = []
    without_strings = re.sub(_STRING, '""', expr)
    referenced = set(_SLUICE_SERIES.findall(without_strings))
    for name in sorted(referenced - exposed_series_names()):
        problems.append(f"{name} is not an exposed series")
    for name in sorted(set(_RECORDED_SERIES.findall(without_strings)) - recorded):
        problems.append(f"{name} is not a recording rule in {RECORDING.name}")
    for match in _SELECTOR.finditer(expr):
        name, body = match.group(1), match.group(2)
        allowed = SERIES_LABELS.get(name)
        if allowed is None:
            continue  # already reported above
        matchers = list(_MATCHER.finditer(body))
        if "".join(m.group(0) for m in matchers).strip() != body.strip():
            problems.append(f"cannot parse the matchers {{{body}}} of {name}")
        for matcher in matchers:
            if matcher.group(1) not in allowed:
                problems.append(f"{name} has no label {matcher.group(1)!r}")
    known = set().union(*(SERIES_LABELS.get(n, frozenset()) for n in referenced))
    if referenced:
        for grouping in _GROUPING.finditer(without_strings):
            for label in filter(None, (s.strip() for s in grouping.group(1).split(","))):
                if label not in known:
                    problems.append(f"grouping label {label!r} is on none of {sorted(referenced)}")
    return problems


def _recorded_names() -> frozenset[str]:
    return frozenset(str(rule["record"]) for rule in _rules(_load_yaml(RECORDING)))


# --- (a) rule files: YAML and Prometheus rule-file structure ---------------------------


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_file_is_a_well_formed_prometheus_rule_file(path: Path) -> None:
    assert rule_file_problems(_load_yaml(path)) == []


def test_rule_file_check_catches_broken_rules() -> None:
    broken = {
        "groups": [
            {
                "name": "g",
                "rules": [
                    {"alert": "A", "record": "a:b", "expr": "1"},
                    {"alert": "B", "expr": "", "for": "five minutes", "labels": {}},
                    {"record": "c:d", "expr": "1", "for": "5m"},
                ],
            }
        ]
    }
    problems = "\n".join(rule_file_problems(broken))

    assert "exactly one of alert and record" in problems
    assert "expr must be a non-empty string" in problems
    assert "must be a duration" in problems
    assert "labels.severity" in problems
    assert "a recording rule cannot have for" in problems
    assert rule_file_problems({"groups": []}) == ["groups must be a non-empty list"]


def test_alert_file_implements_the_origin_alerts() -> None:
    alerts = {str(rule["alert"]): rule for rule in _rules(_load_yaml(ALERTS)) if "alert" in rule}
    expected_severity = {
        "SluiceQueueWaitHigh": "warning",
        "SluiceQueueWaitCritical": "critical",
        "SluiceWorkerUtilizationHigh": "warning",
        "SluiceWorkerUtilizationCritical": "critical",
        "SluiceFailureRateHigh": "warning",
        "SluiceSLAComplianceLow": "warning",
        "SluiceOldestWaitingMessageTooOld": "critical",
        "SluiceSLABurnRateFast": "critical",
        "SluiceSLABurnRateSlow": "warning",
        "SluiceNoWorkers": "warning",
        "SluiceQueuePaused": "warning",
    }

    for name, severity in expected_severity.items():
        assert name in alerts, name
        assert alerts[name]["labels"]["severity"] == severity, name
    assert alerts["SluiceQueuePaused"]["for"] == "15m"
    for threshold in ("> 5", "> 10"):
        assert any(
            "sluice_queue_wait_seconds_bucket[1m]" in str(rule["expr"])
            and str(rule["expr"]).rstrip().endswith(threshold)
            for rule in alerts.values()
        ), threshold
    fast = str(alerts["SluiceSLABurnRateFast"]["expr"])
    slow = str(alerts["SluiceSLABurnRateSlow"]["expr"])
    assert ("[1h]" in fast, "[5m]" in fast, fast.count("> 14.4")) == (True, True, 2)
    assert ("[6h]" in slow, "[30m]" in slow, slow.count("> 6")) == (True, True, 2)


def test_prometheus_config_loads_exactly_the_rule_files() -> None:
    config = _load_yaml(PROMETHEUS_CONFIG)

    assert {PROMETHEUS_DIR / name for name in config["rule_files"]} == set(RULE_FILES)
    [job] = [job for job in config["scrape_configs"] if job["job_name"] == "sluice"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["localhost:8000"]
    assert job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"]


# --- (c) rule expressions use only exposed names and declared labels --------------------


def _rule_exprs() -> Iterator[tuple[str, str]]:
    for path in RULE_FILES:
        for rule in _rules(_load_yaml(path)):
            yield f"{path.name}:{_rule_id(rule)}", str(rule["expr"])


@pytest.mark.parametrize(("rule", "expr"), list(_rule_exprs()), ids=lambda v: str(v)[:60])
def test_rule_expr_uses_only_exposed_metrics_and_labels(rule: str, expr: str) -> None:
    assert expr_problems(expr, _recorded_names()) == [], rule


def test_expr_check_catches_unknown_names_and_labels() -> None:
    problems = expr_problems(
        'sum by (queu) (rate(sluice_jobs_done_total[5m])) + sluice_workers{window="1m"}'
        ' + sluice_queue_wait_seconds_bucket{le="5.0"} + sluice:nope:rate5m'
    )

    assert problems == [
        "sluice_jobs_done_total is not an exposed series",
        f"sluice:nope:rate5m is not a recording rule in {RECORDING.name}",
        "sluice_workers has no label 'window'",
        "grouping label 'queu' is on none of ['sluice_jobs_done_total', "
        "'sluice_queue_wait_seconds_bucket', 'sluice_workers']",
    ]


def test_every_rule_reads_some_metric() -> None:
    for rule, expr in _rule_exprs():
        names = _SLUICE_SERIES.findall(expr) + _RECORDED_SERIES.findall(expr)
        assert names or re.search(r"\bup\{", expr), rule


# --- (d) the Grafana dashboard ----------------------------------------------------------


def _dashboard() -> Any:
    with DASHBOARD.open(encoding="utf-8") as fh:
        return json.load(fh)


def _panels(panels: list[Any]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard_targets() -> Iterator[tuple[str, str]]:
    for panel in _panels(_dashboard()["panels"]):
        for target in panel.get("targets", []):
            yield str(panel["title"]), str(target["expr"])


def test_dashboard_has_the_variables_and_a_templated_datasource() -> None:
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}

    assert dashboard["schemaVersion"] >= 36
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    queue = variables["queue"]
    assert queue["type"] == "query"
    assert expr_problems(str(queue["definition"])) == []
    assert "sluice_" in queue["definition"]
    assert queue["includeAll"] is True
    panels = list(_panels(dashboard["panels"]))
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
            assert panel["targets"], panel["title"]


@pytest.mark.parametrize(("panel", "expr"), list(_dashboard_targets()), ids=lambda v: str(v)[:60])
def test_dashboard_expr_uses_only_exposed_metrics_and_labels(panel: str, expr: str) -> None:
    assert expr_problems(expr) == [], panel
    assert _SLUICE_SERIES.search(expr), panel
    # Every metric that has a queue label follows the dashboard's queue variable.
    for found in _SLUICE_SERIES.finditer(expr):
        if "queue" in SERIES_LABELS.get(found.group(0), frozenset()):
            selector = _SELECTOR.match(expr, found.start())
            assert selector and 'queue=~"$queue"' in selector.group(2), (panel, found.group(0))


def test_dashboard_thresholds_are_the_origin_thresholds() -> None:
    expected: dict[str, set[float]] = {
        "SLA compliance (within 10 s)": {0.95},
        "SLA duration p50 / p95 / p99": {10, 30},
        "Queue wait p95": {5, 10},
        "Oldest waiting message age": {30},
        "Worker utilization (1 min window)": {0.8, 0.9},
        "Failure ratio (5 min)": {0.1},
        "SLA error budget burn rate": {6, 14.4},
    }
    panels = {p["title"]: p for p in _panels(_dashboard()["panels"])}
    for title, values in expected.items():
        steps = panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert values <= {step["value"] for step in steps}, title
    titles = set(panels)
    for wanted in ("Queue depth by state", "Throughput", "Alerts firing"):
        assert wanted in titles
    assert any(t.startswith("Redis pool") for t in titles)


def test_alertmanager_inhibitions_mute_a_warning_under_its_critical_sibling() -> None:
    alerts = {str(rule["alert"]): rule for rule in _rules(_load_yaml(ALERTS)) if "alert" in rule}
    config = _load_yaml(ALERTMANAGER_CONFIG)
    assert config["route"]["group_by"] == ["alertname", "queue"]
    pairs = []
    for rule in config["inhibit_rules"]:
        (source,) = rule["source_matchers"]
        (target,) = rule["target_matchers"]
        found = []
        for matcher in (source, target):
            match = re.fullmatch(r'alertname="([A-Za-z]+)"', matcher)
            assert match is not None, matcher
            found.append(match.group(1))
        critical, warning = found
        assert alerts[critical]["labels"]["severity"] == "critical"
        assert alerts[warning]["labels"]["severity"] == "warning"
        assert rule["equal"] == ["queue"]
        pairs.append((critical, warning))
    assert pairs == [
        ("SluiceQueueWaitCritical", "SluiceQueueWaitHigh"),
        ("SluiceWorkerUtilizationCritical", "SluiceWorkerUtilizationHigh"),
        ("SluiceSLABurnRateFast", "SluiceSLABurnRateSlow"),
    ]


# --- (b) promtool, when it is installed ---------------------------------------------------


@pytest.fixture
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not on PATH (Debian: `apt-get install prometheus`); the YAML "
            "structure, metric-name and label checks above ran without it"
        )
    return found


def _run(*args: str | Path) -> None:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"


def test_promtool_check_rules(promtool: str) -> None:
    _run(promtool, "check", "rules", *RULE_FILES)


def test_promtool_alert_unit_tests(promtool: str) -> None:
    _run(promtool, "test", "rules", RULE_TESTS)


def test_promtool_check_config(promtool: str, tmp_path: Path) -> None:
    # promtool checks that the token file exists, so point it at a scratch one.
    config = _load_yaml(PROMETHEUS_CONFIG)
    token = tmp_path / "token"
    token.write_text("scrape-token\n", encoding="utf-8")
    for job in config["scrape_configs"]:
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token)
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")

    _run(promtool, "check", "config", path)


def test_promtool_parses_the_dashboard_queries(promtool: str, tmp_path: Path) -> None:
    # Grafana variables replaced by what they expand to, then parsed as recording rules.
    rules = []
    for i, (_, expr) in enumerate(_dashboard_targets()):
        expanded = expr.replace("$__rate_interval", "1m").replace("$queue", ".*")
        rules.append({"record": f"dashboard:query:{i}", "expr": expanded})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]}), "utf-8")

    _run(promtool, "check", "rules", path)


def test_amtool_check_config() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool is not on PATH (Debian: `apt-get install prometheus-alertmanager`)")
    _run(amtool, "check-config", ALERTMANAGER_CONFIG)
