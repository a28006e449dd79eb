"""Alert channels against real HTTP servers on loopback (no mocked HTTP client)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from sluice.alerts import AlertEngine, Notification
from sluice.alerts.channels import (
    Channel,
    Dispatcher,
    LogChannel,
    SlackChannel,
    WebhookChannel,
    alertmanager_payload,
)
from sluice.alerts.config import load_alert_settings
from sluice.alerts.rules import default_rules
from sluice.monitor import signals as sig

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
QUEUE = "inbound"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A tiny HTTP/1.1 server recording requests; ``reply`` picks the status per call."""

    reply: Callable[[int], int] = lambda n: 200
    reply_body: bytes = b"ok"
    hang: bool = False
    requests: list[Request] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.requests) >= count), within
            )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            async with self._changed:
                self.requests.append(Request(method, path, headers, body, time.monotonic()))
                number = len(self.requests)
                self._changed.notify_all()
            if self.hang:
                await self._release.wait()
            status = self.reply(number)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(self.reply_body)}\r\n"
                "Content-Type: text/plain\r\nConnection: close\r\n\r\n".encode()
                + self.reply_body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**kwargs: object) -> Receiver:
        receiver = Receiver(**kwargs)  # type: ignore[arg-type]
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        await receiver.close()


def notifications() -> tuple[list[Notification], list[Notification]]:
    """Real notifications from the engine: [firing critical], then [resolved]."""
    s = load_alert_settings({"SLUICE_ALERT_FOR_S": "0", "SLUICE_ALERT_COOLDOWN_S": "0"})
    engine = AlertEngine(default_rules(s), s, QUEUE)
    firing = engine.evaluate({sig.QUEUE_WAIT_P95_MS_1M: 12_000}, 1_700_000_000.0)
    resolved = engine.evaluate({sig.QUEUE_WAIT_P95_MS_1M: 1_000}, 1_700_000_060.0)
    assert [n.kind for n in firing + resolved] == ["firing", "resolved"]
    return firing, resolved


async def test_webhook_body_is_alertmanager_shaped(receivers: Callable[..., Receiver]) -> None:
    receiver = receivers()
    url = await receiver.start()
    channel = WebhookChannel(url + "/hook")
    firing, resolved = notifications()
    await channel.send(firing)
    await channel.send(resolved)
    await receiver.wait_for(2)
    first, second = receiver.requests
    assert (first.method, first.path) == ("POST", "/hook")
    assert first.headers["content-type"] == "application/json"
    body = first.json()
    assert isinstance(body, dict)
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["groupLabels"] == {"queue": QUEUE}
    (alert,) = body["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"] == {
        "alertname": "queue_wait_high",
        "severity": "critical",
        "queue": QUEUE,
    }
    assert set(alert["annotations"]) >= {"summary", "value", "threshold"}
    assert alert["annotations"]["value"] == "12.0 s"
    assert alert["annotations"]["threshold"] == "10.0 s"
    assert RFC3339.match(alert["startsAt"])
    assert alert["startsAt"] == "2023-11-14T22:13:20.000Z"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["fingerprint"] == firing[0].alert.fingerprint
    done = second.json()
    assert isinstance(done, dict)
    assert done["status"] == "resolved"
    assert done["alerts"][0]["status"] == "resolved"
    assert done["alerts"][0]["endsAt"] == "2023-11-14T22:14:20.000Z"
    assert done["alerts"][0]["fingerprint"] == alert["fingerprint"]


async def test_slack_text_has_a_readable_line_per_alert(
    receivers: Callable[..., Receiver],
) -> None:
    receiver = receivers()
    url = await receiver.start()
    firing, resolved = notifications()
    await SlackChannel(url + "/services/T0/B0/abc").send(firing + resolved)
    await receiver.wait_for(1)
    body = receiver.requests[0].json()
    assert isinstance(body, dict) and set(body) == {"text"}
    lines = body["text"].split("\n")
    assert len(lines) == 2
    assert "FIRING" in lines[0] and "critical" in lines[0] and "queue_wait_high" in lines[0]
    assert QUEUE in lines[0] and "12.0 s" in lines[0] and "10.0 s" in lines[0]
    assert "RESOLVED" in lines[1] and "queue_wait_high" in lines[1]


class LowJitter(random.Random):
    """Jitter always at its low end, so the expected delays are exact lower bounds."""

    def uniform(self, a: float, b: float) -> float:
        return a


async def test_failures_are_retried_with_backoff(receivers: Callable[..., Receiver]) -> None:
    receiver = receivers(reply=lambda n: 500 if n <= 3 else 200)
    url = await receiver.start()
    base = 0.1
    dispatcher = Dispatcher([WebhookChannel(url)], max_attempts=5, backoff_s=base, rng=LowJitter())
    firing, _ = notifications()
    dispatcher.submit(firing)
    await receiver.wait_for(4)
    assert await dispatcher.flush(5.0)
    times = [r.at for r in receiver.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Delays are half of base, 2 base, 4 base (equal jitter at its low end): they grow.
    assert gaps[0] >= base / 2
    assert gaps[1] >= base
    assert gaps[2] >= 2 * base
    assert gaps[2] > gaps[0]
    assert len({r.body for r in receiver.requests}) == 1  # the same batch each time
    stats = dispatcher.stats["webhook"]
    assert (stats.delivered, stats.failed_attempts, stats.dropped) == (1, 3, 0)
    await dispatcher.close(1.0)
    assert len(receiver.requests) == 4


def test_backoff_is_jittered_and_capped() -> None:
    dispatcher = Dispatcher([LogChannel()], backoff_s=1.0, max_backoff_s=8.0)
    delays = [dispatcher._delay(attempt) for attempt in range(1, 8)]
    for attempt, delay in enumerate(delays, start=1):
        step = min(8.0, 2.0 ** (attempt - 1))
        assert step / 2 <= delay <= step
    assert len({round(d, 9) for d in delays}) == len(delays)  # jitter: no two alike


async def test_a_failing_or_hanging_channel_blocks_neither_submit_nor_other_channels(
    receivers: Callable[..., Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    broken = receivers(reply=lambda n: 500)
    stuck = receivers(hang=True)
    good = receivers()
    broken_url, stuck_url, good_url = broken.start(), stuck.start(), good.start()
    channels: list[Channel] = [
        WebhookChannel(await broken_url + "/a"),
        WebhookChannel(await stuck_url + "/b", timeout_s=30),
        SlackChannel(await good_url + "/services/T/B/C"),
    ]
    dispatcher = Dispatcher(channels, max_attempts=3, backoff_s=0.01)
    firing, _ = notifications()
    started = time.perf_counter()
    for _ in range(5):
        dispatcher.submit(firing)
    assert time.perf_counter() - started < 0.05  # no network I/O on the caller's path
    await good.wait_for(5)
    await broken.wait_for(15)  # 5 batches x 3 attempts
    await stuck.wait_for(1)
    assert len(stuck.requests) == 1  # still waiting on the first batch
    for _ in range(200):  # the last give-up is logged right after the 15th answer
        if dispatcher.stats["webhook"].dropped == 5:
            break
        await asyncio.sleep(0.01)
    assert dispatcher.stats["webhook"].dropped == 5
    assert dispatcher.stats["slack"].delivered == 5
    assert dispatcher.stats["webhook-2"].delivered == 0
    assert "failed 3 times, dropped 1 notification(s)" in caplog.text
    started = time.perf_counter()
    await dispatcher.close(0.2)  # gives the stuck channel 0.2 s, then cancels it
    assert time.perf_counter() - started < 2


async def test_a_full_queue_drops_the_oldest_batch(
    receivers: Callable[..., Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    stuck = receivers(hang=True)
    dispatcher = Dispatcher([WebhookChannel(await stuck.start())], queue_size=2)
    firing, _ = notifications()
    for _ in range(5):
        dispatcher.submit(firing)
    assert dispatcher.stats["webhook"].dropped == 3
    assert "not keeping up" in caplog.text
    await dispatcher.close(0.1)


async def test_secrets_never_reach_the_logs(
    receivers: Callable[..., Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # httpx's request lines are shown at DEBUG (sluice.logs hides them below): show them.
    caplog.set_level(logging.DEBUG, logger="httpx")
    broken = receivers(reply=lambda n: 500)
    base = (await broken.start()).removeprefix("http://")
    slack = SlackChannel(f"http://{base}/services/T000/B000/SLACKSECRET123")
    hook = WebhookChannel(f"http://alice:hunter2pass@{base}/hook?token=t0k3nvalue")
    dispatcher = Dispatcher([slack, hook], max_attempts=2, backoff_s=0.01)
    firing, _ = notifications()
    dispatcher.submit(firing)
    await broken.wait_for(4)
    assert await dispatcher.flush(5.0)
    logging.getLogger("test").warning("check: %s / %s", await slack.check(), await hook.check())
    await dispatcher.close(1.0)
    assert broken.requests[0].path == "/services/T000/B000/SLACKSECRET123"  # really used
    assert any(r.headers.get("authorization", "").startswith("Basic ") for r in broken.requests)
    text = caplog.text + repr(slack) + repr(hook)
    assert "/services/***" in text and "***@" in text  # masked, not just absent
    assert "HTTP Request" in caplog.text  # httpx's own log line was there, and masked
    for secret in ("SLACKSECRET123", "T000/B000", "hunter2pass", "t0k3nvalue"):
        assert secret not in text


async def test_checks_report_reachability(receivers: Callable[..., Receiver]) -> None:
    ok = receivers()
    missing = receivers(reply=lambda n: 404)
    slack_ok = receivers(reply=lambda n: 400, reply_body=b"no_text")
    slack_bad = receivers(reply=lambda n: 403, reply_body=b"invalid_token")
    assert await WebhookChannel(await ok.start()).check() is None
    problem = await WebhookChannel(await missing.start() + "/x").check()
    assert problem is not None and "404" in problem
    assert await SlackChannel(await slack_ok.start() + "/services/a/b/c").check() is None
    problem = await SlackChannel(await slack_bad.start() + "/services/a/b/c").check()
    assert problem is not None and "invalid_token" in problem
    assert (ok.requests[0].method, slack_ok.requests[0].method) == ("HEAD", "POST")
    assert slack_ok.requests[0].json() == {}  # nothing that Slack would post
    closed = receivers()
    url = await closed.start()
    await closed.close()
    problem = await WebhookChannel(url + "/gone", timeout_s=1).check()
    assert problem is not None and "ConnectError" in problem
    assert await LogChannel().check() is None


async def test_log_channel_writes_structured_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sluice.alerts")
    firing, resolved = notifications()
    await LogChannel().send(firing + resolved)
    records = [r for r in caplog.records if r.name == "sluice.alerts"]
    assert [r.levelno for r in records] == [logging.ERROR, logging.INFO]
    fields = records[0].fields  # type: ignore[attr-defined]
    assert fields["alertname"] == "queue_wait_high"
    assert fields["severity"] == "critical" and fields["kind"] == "firing"
    assert fields["queue"] == QUEUE and fields["value"] == 12_000
    assert records[1].fields["status"] == "resolved"  # type: ignore[attr-defined]


def test_payload_group_status_is_firing_if_any_alert_fires() -> None:
    firing, resolved = notifications()
    assert alertmanager_payload(firing + resolved)["status"] == "firing"
    assert alertmanager_payload(resolved)["status"] == "resolved"
    assert alertmanager_payload(resolved)["commonLabels"]["alertname"] == "queue_wait_high"
