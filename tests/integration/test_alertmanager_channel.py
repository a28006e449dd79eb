"""The Alertmanager channel against a real HTTP server on loopback: the postableAlert body,
endsAt as Prometheus sets it, re-sends, prompt resolution, silences, escalation, settings.

The channel against a real Alertmanager is tests/reliability/test_prometheus_alertmanager.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from sluice.alerts import AlertEngine, AlertSnapshot
from sluice.alerts.channels import (
    AlertmanagerChannel,
    Dispatcher,
    LogChannel,
    ResendingChannel,
    channels_from_settings,
)
from sluice.alerts.channels.alertmanager import RESOLVED_RETENTION_S
from sluice.alerts.config import load_alert_settings
from sluice.alerts.rules import default_rules
from sluice.monitor import signals as sig
from sluice.settings.config import ConfigError

from .test_channels import QUEUE, RFC3339, Receiver, notifications, receivers  # noqa: F401

T0 = 1_700_000_000.0
WAIT = sig.QUEUE_WAIT_P95_MS_1M


def engine(cooldown_s: float = 0.0) -> AlertEngine:
    s = load_alert_settings({"SLUICE_ALERT_FOR_S": "0", "SLUICE_ALERT_COOLDOWN_S": str(cooldown_s)})
    return AlertEngine(default_rules(s), s, QUEUE)


def test_firing_and_resolved_bodies_follow_the_openapi_postable_alert() -> None:
    channel = AlertmanagerChannel("http://am:9093", resend_s=60, evaluation_interval_s=5)
    firing, resolved = notifications()
    (alert,) = channel.payload(firing)
    assert set(alert) == {"labels", "annotations", "startsAt", "endsAt"}  # no empty URL
    assert alert["labels"] == {
        "alertname": "queue_wait_high",
        "queue": QUEUE,
        "severity": "critical",
    }
    assert alert["annotations"]["value"] == "12.0 s"
    assert alert["annotations"]["threshold"] == "10.0 s"
    assert all(isinstance(v, str) for v in alert["annotations"].values())
    assert RFC3339.match(alert["startsAt"]) and alert["startsAt"] == "2023-11-14T22:13:20.000Z"
    # Prometheus's ValidUntil: 4 x max(evaluation interval, resend delay) after the send.
    assert alert["endsAt"] == "2023-11-14T22:17:20.000Z"
    (done,) = channel.payload(resolved)
    assert done["labels"] == alert["labels"]  # the same alert to Alertmanager
    assert done["endsAt"] == "2023-11-14T22:14:20.000Z"  # when it resolved
    linked = AlertmanagerChannel("http://am:9093", generator_url="https://sluice.example/dash")
    assert linked.payload(firing)[0]["generatorURL"] == "https://sluice.example/dash"


def test_an_escalation_ends_the_previous_severity() -> None:
    eng = engine()
    channel = AlertmanagerChannel("http://am:9093")
    warned = eng.evaluate({WAIT: 7_000}, T0)
    escalated = eng.evaluate({WAIT: 12_000}, T0 + 5)
    assert [n.kind for n in warned + escalated] == ["firing", "escalated"]
    body = channel.payload(escalated)
    by_severity = {a["labels"]["severity"]: a for a in body}
    assert set(by_severity) == {"warning", "critical"}
    assert by_severity["warning"]["endsAt"] == "2023-11-14T22:13:25.000Z"  # ended now
    assert by_severity["critical"]["endsAt"] > by_severity["warning"]["endsAt"]


def test_firing_alerts_are_re_sent_every_resend_interval() -> None:
    eng = engine()
    channel = AlertmanagerChannel("http://am:9093", resend_s=60)
    assert isinstance(channel, ResendingChannel)
    assert not isinstance(LogChannel(), ResendingChannel)
    first = eng.evaluate({WAIT: 12_000}, T0)
    sent = channel.batch(first, eng.alerts(), T0)
    assert [n.kind for n in sent] == ["firing"]  # no duplicate of what was notified
    later = [
        (t, channel.batch(eng.evaluate({WAIT: 12_000}, t), eng.alerts(), t))
        for t in (T0 + 5, T0 + 55, T0 + 60, T0 + 65, T0 + 120)
    ]
    kinds = {t - T0: [n.kind for n in batch] for t, batch in later}
    assert kinds == {5: [], 55: [], 60: ["refresh"], 65: [], 120: ["refresh"]}
    refresh = later[2][1][0]
    body = channel.payload([refresh])[0]
    assert body["startsAt"] == "2023-11-14T22:13:20.000Z"  # the episode's start, kept
    assert body["endsAt"] == "2023-11-14T22:18:20.000Z"  # T0 + 60 + 4 x 60


def test_a_resolution_is_sent_at_once_despite_the_cooldown_then_kept_for_retention() -> None:
    eng = engine(cooldown_s=300)
    channel = AlertmanagerChannel("http://am:9093", resend_s=60)
    channel.batch(eng.evaluate({WAIT: 12_000}, T0), eng.alerts(), T0)
    notes = eng.evaluate({WAIT: 1_000}, T0 + 10)
    assert notes == []  # the engine holds its resolved notice for the cooldown
    sent = channel.batch(notes, eng.alerts(), T0 + 10)
    assert [n.kind for n in sent] == ["resolved"]
    assert channel.payload(sent)[0]["endsAt"] == "2023-11-14T22:13:30.000Z"
    assert channel.batch([], eng.alerts(), T0 + 15) == []  # told once, not at every evaluation
    again = channel.batch([], eng.alerts(), T0 + 60)
    assert [n.kind for n in again] == ["resolved"]  # re-sent with the periodic re-send
    notice = eng.evaluate({WAIT: 1_000}, T0 + 310)
    assert [n.kind for n in notice] == ["resolved"]  # the engine's own notice, passed on
    assert [n.kind for n in channel.batch(notice, eng.alerts(), T0 + 310)] == ["resolved"]
    beyond = T0 + 10 + RESOLVED_RETENTION_S + 1
    assert channel.batch([], eng.alerts(), beyond) == []


def test_silenced_alerts_are_not_sent_at_all() -> None:
    eng = engine()
    channel = AlertmanagerChannel("http://am:9093", resend_s=60)
    channel.batch(eng.evaluate({WAIT: 12_000}, T0), eng.alerts(), T0)
    eng.silence("queue_wait_high", T0 + 3600, "ops", T0 + 1)
    assert channel.batch(eng.evaluate({WAIT: 12_000}, T0 + 60), eng.alerts(), T0 + 60) == []
    snap: AlertSnapshot = eng.get("queue_wait_high")
    assert snap.silenced_until is not None
    unsilenced = replace(snap, silenced_until=None)
    assert [n.kind for n in channel.batch([], [unsilenced], T0 + 120)] == ["refresh"]


async def test_posts_to_the_v2_alerts_api_and_checks_its_status(
    receivers: Callable[..., Receiver],  # noqa: F811
) -> None:
    receiver = receivers()
    base = await receiver.start()
    channel = AlertmanagerChannel(base + "/prefix/")
    firing, resolved = notifications()
    dispatcher = Dispatcher([channel, LogChannel()])
    dispatcher.submit(firing, [n.alert for n in firing], T0)
    dispatcher.submit([], [n.alert for n in firing], T0 + 1)  # no re-send due: nothing
    dispatcher.submit(resolved, [n.alert for n in resolved], T0 + 60)
    assert await dispatcher.flush(5.0)
    await dispatcher.close(1.0)
    assert [(r.method, r.path) for r in receiver.requests] == [
        ("POST", "/prefix/api/v2/alerts"),
        ("POST", "/prefix/api/v2/alerts"),
    ]
    body = receiver.requests[0].json()
    assert isinstance(body, list) and body[0]["labels"]["alertname"] == "queue_wait_high"
    done = receiver.requests[1].json()
    assert isinstance(done, list) and done[0]["endsAt"] == "2023-11-14T22:14:20.000Z"
    assert dispatcher.stats["alertmanager"].delivered == 2
    assert await channel.check() is None
    assert receiver.requests[-1].method == "GET"
    assert receiver.requests[-1].path == "/prefix/api/v2/status"
    missing = receivers(reply=lambda n: 404)
    problem = await AlertmanagerChannel(await missing.start()).check()
    assert problem is not None and "404" in problem and "API v2" in problem


def test_settings_make_one_channel_per_alertmanager() -> None:
    s = load_alert_settings(
        {
            "SLUICE_ALERT_ALERTMANAGER_URL": "http://am-1:9093, http://u:secretpw@am-2:9093",
            "SLUICE_ALERT_ALERTMANAGER_RESEND_S": "30",
            "SLUICE_ALERT_EVALUATION_INTERVAL_S": "5",
        }
    )
    channels = [c for c in channels_from_settings(s) if isinstance(c, AlertmanagerChannel)]
    assert [c.target for c in channels] == [
        "http://am-1:9093/api/v2/alerts",
        "http://***@am-2:9093/api/v2/alerts",
    ]
    assert [(c.resend_s, c.lease_s) for c in channels] == [(30, 120), (30, 120)]
    prefixed = AlertmanagerChannel("https://am.example/am/?tenant=blue")
    assert prefixed.target == "https://am.example/am/api/v2/alerts?tenant=***"
    shown = s.describe()["SLUICE_ALERT_ALERTMANAGER_URL"]
    assert isinstance(shown, str) and "secretpw" not in shown and "am-2" in shown
    assert load_alert_settings({}).alertmanager_urls() == []
    with pytest.raises(ConfigError, match="SLUICE_ALERT_ALERTMANAGER_URL"):
        load_alert_settings({"SLUICE_ALERT_ALERTMANAGER_URL": "am:9093"})
    with pytest.raises(ConfigError, match="SLUICE_ALERT_ALERTMANAGER_RESEND_S"):
        load_alert_settings({"SLUICE_ALERT_ALERTMANAGER_RESEND_S": "0"})
