"""Alert settings and rules: origin defaults, readable errors, levels, hysteresis, gating."""

from __future__ import annotations

import math

import pytest

from sluice.alerts.config import AlertSettings, load_alert_settings, mask_url
from sluice.alerts.rules import MinOf, Rule, default_rules, format_value
from sluice.monitor import signals as sig
from sluice.settings.config import ConfigError


def rules_by_name(settings: AlertSettings | None = None) -> dict[str, Rule]:
    return {r.name: r for r in default_rules(settings or load_alert_settings({}))}


# -- settings -----------------------------------------------------------------------------


def test_defaults_are_the_origin_thresholds() -> None:
    s = load_alert_settings({})
    assert (s.queue_wait_warning_ms, s.queue_wait_critical_ms) == (5_000, 10_000)
    assert (s.utilization_warning, s.utilization_critical) == (0.80, 0.90)
    assert (s.failure_rate_warning, s.failure_rate_critical) == (0.10, None)
    assert s.failure_rate_min_samples == 20
    assert (s.sla_objective, s.sla_min_samples) == (0.95, 20)
    assert s.oldest_waiting_critical_ms == 30_000
    assert (s.burn_rate_fast, s.burn_rate_slow) == (14.4, 6.0)
    assert (s.for_s, s.hysteresis) == (30, 0.1)
    assert (s.repeat_interval_s, s.cooldown_s) == (4 * 3600, 300)
    assert (s.webhook_url, s.slack_webhook_url) == (None, None)
    assert (s.evaluation_interval_s, s.lease_ttl_s, s.lease_ttl_ms) == (5, 15, 15_000)


def test_every_threshold_is_read_from_its_variable() -> None:
    s = load_alert_settings(
        {
            "SLUICE_ALERT_QUEUE_WAIT_WARNING_MS": "2000",
            "SLUICE_ALERT_QUEUE_WAIT_CRITICAL_MS": "4000",
            "SLUICE_ALERT_UTILIZATION_CRITICAL": "0.95",
            "SLUICE_ALERT_FAILURE_RATE_CRITICAL": "0.5",
            "SLUICE_ALERT_SLA_OBJECTIVE": "0.99",
            "SLUICE_ALERT_FOR_S": "0",
            "SLUICE_ALERT_REPEAT_INTERVAL_S": "60",
            "SLUICE_ALERT_COOLDOWN_S": "0",
        }
    )
    rules = rules_by_name(s)
    assert (rules["queue_wait_high"].warning, rules["queue_wait_high"].critical) == (2000, 4000)
    assert rules["worker_utilization_high"].critical == 0.95
    assert rules["failure_rate_high"].critical == 0.5
    assert rules["sla_compliance_low"].warning == 0.99
    assert all(rule.for_s == 0 for rule in rules.values())
    assert (s.repeat_interval_s, s.cooldown_s) == (60, 0)


def test_oldest_waiting_follows_sla_critical_unless_overridden() -> None:
    assert load_alert_settings({"SLA_CRITICAL_THRESHOLD": "20000"}).oldest_waiting_critical_ms == (
        20_000
    )
    both = {"SLA_CRITICAL_THRESHOLD": "20000", "SLUICE_ALERT_OLDEST_WAITING_CRITICAL_MS": "45000"}
    assert load_alert_settings(both).oldest_waiting_critical_ms == 45_000


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SLUICE_ALERT_FOR_S": "-1"}, "SLUICE_ALERT_FOR_S"),
        ({"SLUICE_ALERT_UTILIZATION_WARNING": "1.5"}, "SLUICE_ALERT_UTILIZATION_WARNING"),
        ({"SLUICE_ALERT_HYSTERESIS": "lots"}, "SLUICE_ALERT_HYSTERESIS"),
        ({"SLUICE_ALERT_SLA_MIN_SAMPLES": "2.5"}, "SLUICE_ALERT_SLA_MIN_SAMPLES"),
        ({"SLA_CRITICAL_THRESHOLD": "soon"}, "SLA_CRITICAL_THRESHOLD"),
        ({"SLUICE_ALERT_WEBHOOK_URL": "ftp://x"}, "SLUICE_ALERT_WEBHOOK_URL"),
        ({"SLUICE_ALERT_QUEUE_WAIT_WARNING_MS": "20000"}, "SLUICE_ALERT_QUEUE_WAIT_WARNING_MS"),
        ({"SLUICE_ALERT_EVALUATION_INTERVAL_S": "30"}, "SLUICE_ALERT_LEASE_TTL_S"),
        ({"SLUICE_ALERT_SLA_COMPLIANCE_CRITICAL": "0.97"}, "SLUICE_ALERT_SLA_COMPLIANCE_CRITICAL"),
    ],
)
def test_errors_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_alert_settings(env)
    assert variable in caught.value.variables
    assert variable in str(caught.value)


def test_slack_url_is_a_secret() -> None:
    url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    s = load_alert_settings({"SLUICE_ALERT_SLACK_WEBHOOK_URL": url})
    assert s.slack_url() == url
    assert "XXXXSECRET" not in repr(s)
    assert "XXXXSECRET" not in str(s.describe())
    assert s.describe()["SLUICE_ALERT_SLACK_WEBHOOK_URL"] == "https://hooks.slack.com/services/***"
    with pytest.raises(ConfigError) as caught:
        load_alert_settings({"SLUICE_ALERT_SLACK_WEBHOOK_URL": "nope://x/services/T/B/XXXXSECRET"})
    assert "XXXXSECRET" not in str(caught.value)


def test_mask_url_hides_credentials() -> None:
    assert mask_url("https://u:pw@h.example:8443/a/b?token=t&x=1") == (
        "https://***@h.example:8443/a/b?token=***&x=***"
    )
    assert mask_url("https://hooks.slack.com/services/T/B/S", hide_path=True) == (
        "https://hooks.slack.com/services/***"
    )
    assert mask_url("http://[::1]:99/x") == "http://[::1]:99/x"


# -- rules --------------------------------------------------------------------------------


def test_levels_are_strict_and_critical_wins() -> None:
    rule = rules_by_name()["queue_wait_high"]
    assert rule.level({sig.QUEUE_WAIT_P95_MS_1M: 4_999}) == (None, 4_999)
    assert rule.level({sig.QUEUE_WAIT_P95_MS_1M: 5_000}) == (None, 5_000)  # "> 5 s"
    assert rule.level({sig.QUEUE_WAIT_P95_MS_1M: 5_001}) == ("warning", 5_001)
    assert rule.level({sig.QUEUE_WAIT_P95_MS_1M: 10_001}) == ("critical", 10_001)
    assert rule.level({}) == (None, None)
    assert rule.level({sig.QUEUE_WAIT_P95_MS_1M: None}) == (None, None)
    assert rule.level({sig.QUEUE_WAIT_P95_MS_1M: math.nan}) == (None, None)


def test_utilization_thresholds() -> None:
    rule = rules_by_name()["worker_utilization_high"]
    assert rule.level({sig.UTILIZATION_5M: 0.8})[0] is None
    assert rule.level({sig.UTILIZATION_5M: 0.85})[0] == "warning"
    assert rule.level({sig.UTILIZATION_5M: 0.95})[0] == "critical"


def test_below_rule_and_its_hysteresis_towards_the_limit() -> None:
    rule = rules_by_name()["sla_compliance_low"]
    enough = {sig.SLA_SAMPLES_5M: 100.0}
    assert rule.level({**enough, sig.SLA_COMPLIANCE_WARNING_5M: 0.96})[0] is None
    assert rule.level({**enough, sig.SLA_COMPLIANCE_WARNING_5M: 0.94})[0] == "warning"
    assert rule.severities == ("warning",)
    # 10 % of the distance to 100 %: back at 95.5 %, not at an impossible 104.5 %.
    assert rule.clear_threshold("warning") == pytest.approx(0.955)
    assert not rule.is_clear(0.952, "warning")
    assert rule.is_clear(0.956, "warning")


def test_hysteresis_band_for_above_rules() -> None:
    rule = rules_by_name()["queue_wait_high"]
    assert rule.clear_threshold("warning") == pytest.approx(4_500)
    assert rule.clear_threshold("critical") == pytest.approx(9_000)
    assert not rule.is_clear(4_800, "warning")  # under the threshold, but not enough
    assert rule.is_clear(4_500, "warning")
    assert not rule.is_clear(9_500, "critical")
    assert rule.is_clear(8_000, "critical")
    assert rule.is_clear(None, "warning")  # no data counts as clear


def test_min_samples_gate_the_failure_rate() -> None:
    rule = rules_by_name()["failure_rate_high"]
    few = {sig.FAILURE_RATE_5M: 0.5, sig.FINISHED_5M: 19.0}
    enough = {sig.FAILURE_RATE_5M: 0.5, sig.FINISHED_5M: 20.0}
    assert rule.level(few) == (None, None)
    assert rule.level({sig.FAILURE_RATE_5M: 0.5}) == (None, None)  # no count, no verdict
    assert rule.level(enough) == ("warning", 0.5)


def test_burn_rate_needs_both_windows() -> None:
    rules = rules_by_name()
    fast, slow = rules["sla_burn_rate_fast"], rules["sla_burn_rate_slow"]
    base = {sig.SLA_SAMPLES_5M: 100.0}
    assert fast.level({**base, sig.BURN_RATE_1H: 20.0, sig.BURN_RATE_5M: 10.0})[0] is None
    assert fast.level({**base, sig.BURN_RATE_1H: 10.0, sig.BURN_RATE_5M: 20.0})[0] is None
    assert fast.level({**base, sig.BURN_RATE_1H: 15.0, sig.BURN_RATE_5M: 20.0}) == (
        "critical",
        15.0,
    )
    assert fast.level({**base, sig.BURN_RATE_1H: 15.0})[0] is None
    assert slow.level({sig.BURN_RATE_6H: 7.0, sig.BURN_RATE_30M: 5.0})[0] is None
    assert slow.level({sig.BURN_RATE_6H: 7.0, sig.BURN_RATE_30M: 8.0}) == ("warning", 7.0)
    assert MinOf(("a", "b"))({"a": 3.0, "b": 2.0}) == 2.0


def test_oldest_waiting_is_critical_only() -> None:
    rule = rules_by_name()["oldest_waiting_age_high"]
    assert rule.severities == ("critical",)
    assert rule.level({sig.OLDEST_WAITING_AGE_MS: 31_000})[0] == "critical"
    assert rule.level({sig.OLDEST_WAITING_AGE_MS: 29_000})[0] is None


def test_default_rules_only_read_known_signals() -> None:
    for rule in default_rules(load_alert_settings({})):
        assert rule.signal in sig.ALL_SIGNALS
        assert rule.min_samples_signal is None or rule.min_samples_signal in sig.ALL_SIGNALS


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="needs a warning or a critical"):
        Rule("r", "s", "x", "above", None, None)
    with pytest.raises(ValueError, match="critical"):
        Rule("r", "s", "x", "above", 10, 5)
    with pytest.raises(ValueError, match="critical"):
        Rule("r", "s", "x", "below", 0.5, 0.9)
    with pytest.raises(ValueError, match="hysteresis"):
        Rule("r", "s", "x", "above", 1, 2, hysteresis=1.0)


def test_format_value() -> None:
    assert format_value(12_345, "ms") == "12.3 s"
    assert format_value(850, "ms") == "850 ms"
    assert format_value(0.935, "ratio") == "93.5 %"
    assert format_value(15.24, "x") == "15.2x"
    assert format_value(None, "ms") == "no data"
