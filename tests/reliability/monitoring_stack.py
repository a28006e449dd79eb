"""A real Prometheus and Alertmanager on loopback for the end-to-end alerting test.

Debian's binaries (``scripts/ensure-prometheus.sh`` installs them), each started with its
own free port and data directory under the test's tmp dir, so an instance the packages may
have started on :9090/:9093 never matters. The configuration is the shipped one from
``deploy/``; only what has to change on loopback changes (:func:`prometheus_config`,
:func:`alertmanager_config`), plus the time compression of :func:`compress_rule_file`.

Also here: the webhook receiver Alertmanager delivers to (a real HTTP server recording
every notification) and small JSON helpers for the two HTTP APIs.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from ..servers import free_port

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
SHIPPED_PROMETHEUS = PROMETHEUS_DIR / "prometheus.yml"
SHIPPED_ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
READY_TIMEOUT_S = 30.0

# Prometheus's duration syntax (model.ParseDuration), units in descending order.
_UNITS_MS = (
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
)
_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
# A range selector: a duration in brackets (subqueries, [5m:1m], have a colon and are
# refused by compress_expr rather than half-rewritten).
_RANGE = re.compile(r"\[([0-9a-z:]+)\]")


def binaries() -> tuple[str, str] | None:
    """(prometheus, alertmanager) when both are on PATH. Debian names the latter
    ``prometheus-alertmanager``, upstream ``alertmanager``."""
    prometheus = shutil.which("prometheus")
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if prometheus is None or alertmanager is None:
        return None
    return prometheus, alertmanager


# -- time compression --------------------------------------------------------------------


def parse_duration_ms(text: str) -> int:
    match = _DURATION.match(text)
    if not text or match is None:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * ms for n, (_, ms) in zip(match.groups(), _UNITS_MS, strict=True) if n)


def format_duration_ms(ms: int) -> str:
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS_MS:
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def scale(text: str, factor: int) -> str:
    """A duration divided by ``factor``, exactly (a remainder is refused, not rounded)."""
    ms = parse_duration_ms(text)
    if ms % factor:
        raise ValueError(f"{text} is not a whole number of milliseconds divided by {factor}")
    return format_duration_ms(ms // factor)


def compress_expr(expr: str, factor: int) -> str:
    def one(match: re.Match[str]) -> str:
        if ":" in match.group(1):
            raise ValueError(f"subquery {match.group(0)} in {expr!r}: not handled")
        return f"[{scale(match.group(1), factor)}]"

    if re.search(r"\boffset\b|@", expr):
        raise ValueError(f"offset or @ in {expr!r}: not handled")
    return _RANGE.sub(one, expr)


def compress_rule_file(data: Mapping[str, Any], factor: int) -> dict[str, Any]:
    """The rule file with every duration divided by ``factor``: each group's ``interval``,
    each rule's ``for`` and every range selector in ``expr``. Names, expressions otherwise,
    thresholds, labels and annotations are the shipped ones, untouched."""
    groups = []
    for group in data["groups"]:
        new_group = dict(group)
        if "interval" in group:
            new_group["interval"] = scale(str(group["interval"]), factor)
        rules = []
        for rule in group["rules"]:
            new_rule = dict(rule)
            new_rule["expr"] = compress_expr(str(rule["expr"]), factor)
            if "for" in rule:
                new_rule["for"] = scale(str(rule["for"]), factor)
            rules.append(new_rule)
        new_group["rules"] = rules
        groups.append(new_group)
    return {**data, "groups": groups}


def without_durations(data: Mapping[str, Any]) -> Any:
    """The rule file with every duration blanked: equal for a file and its compression
    exactly when nothing but durations differ."""
    blank = compress_rule_file(data, 1)
    for group in blank["groups"]:
        group.pop("interval", None)
        for rule in group["rules"]:
            rule["expr"] = _RANGE.sub("[_]", rule["expr"])
            rule.pop("for", None)
    return blank


# -- configuration -----------------------------------------------------------------------


def prometheus_config(
    out_dir: Path,
    *,
    factor: int,
    sluice: str,
    token_file: Path,
    alertmanager: str,
) -> Path:
    """``deploy/prometheus/prometheus.yml`` for loopback, written into ``out_dir`` with the
    rule files it names (time-compressed by ``factor``). Changed: the ``sluice`` job's
    target and token file, the global intervals (divided by ``factor``; the scrape timeout,
    unset in the shipped file, equals the interval as Prometheus requires it not to be
    longer), and the ``alerting`` block the shipped file has commented out, pointed at
    ``alertmanager``."""
    config = yaml.safe_load(SHIPPED_PROMETHEUS.read_text())
    glob = config["global"]
    interval = scale(str(glob["scrape_interval"]), factor)
    glob["scrape_interval"] = interval
    glob["evaluation_interval"] = scale(str(glob["evaluation_interval"]), factor)
    glob["scrape_timeout"] = interval
    for name in config["rule_files"]:
        shipped = yaml.safe_load((PROMETHEUS_DIR / name).read_text())
        compressed = compress_rule_file(shipped, factor)
        (out_dir / name).write_text(yaml.safe_dump(compressed, sort_keys=False))
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "sluice"
    job["static_configs"] = [{"targets": [sluice]}]
    job["authorization"]["credentials_file"] = str(token_file)
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    path = out_dir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def alertmanager_config(
    out_dir: Path, *, webhook_url: str, group_wait: str, group_interval: str
) -> Path:
    """``deploy/alertmanager/alertmanager.yml`` with the receiver's webhook URL replaced
    and the route's timings shortened (the repeat interval stays long: a test must not
    mistake a repeat for a new notification). Routes, grouping and inhibitions as shipped."""
    config = yaml.safe_load(SHIPPED_ALERTMANAGER.read_text())
    (receiver,) = config["receivers"]
    (hook,) = receiver["webhook_configs"]
    hook["url"] = webhook_url
    config["route"].update(group_wait=group_wait, group_interval=group_interval)
    path = out_dir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# -- processes ---------------------------------------------------------------------------


@dataclass
class Server:
    """A Prometheus or Alertmanager child process on a free loopback port."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> float:
        """Start it and poll ``/-/ready`` until it answers 200; seconds it took."""
        started = time.monotonic()
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            self.argv, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() - started < READY_TIMEOUT_S:
                if self.proc.poll() is not None:
                    break
                try:
                    if (await client.get(self.url + "/-/ready")).status_code == 200:
                        return time.monotonic() - started
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready; see {self.log_path}")

    async def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.to_thread(self.proc.wait, 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait)


def prometheus_server(binary: str, config: Path, data: Path, logs: Path, factor: int) -> Server:
    port = free_port()
    resend = scale("1m", factor)  # --rules.alert.resend-delay's default, compressed too
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--rules.alert.resend-delay={resend}",
    ]
    return Server("prometheus", argv, port, logs / "prometheus.log")


def alertmanager_server(binary: str, config: Path, data: Path, logs: Path) -> Server:
    port = free_port()
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # empty: no gossip port, a single instance
    ]
    return Server("alertmanager", argv, port, logs / "alertmanager.log")


async def get_json(url: str, params: Any = None, token: str | None = None) -> Any:
    """GET ``url`` and decode its JSON; ``params`` as httpx takes them (a list of pairs
    repeats a parameter), ``token`` as a bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(url, params=params, headers=headers)
        response.raise_for_status()
        return response.json()


async def poll(what: str, probe: Callable[[], Any], *, within: float, every: float = 0.25) -> Any:
    """Call the async ``probe`` until it returns something truthy; bounded by ``within``
    seconds (the assertion message names ``what``)."""
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f} s: {what}")
        await asyncio.sleep(every)


# -- the webhook receiver ----------------------------------------------------------------


@dataclass
class Delivery:
    """One alert of one Alertmanager notification, and when it arrived."""

    at: float  # time.time() at arrival
    status: str  # of the alert: firing or resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]


@dataclass
class WebhookReceiver:
    """A real HTTP server taking Alertmanager's webhook notifications (version 4 bodies).

    It only reads what Alertmanager sends (prometheus/alertmanager, notify/webhook/webhook.go
    and docs/configuration.md, ``<webhook_config>``: a JSON POST with ``version: "4"``,
    ``status`` and ``alerts[]`` each carrying status, labels, annotations, startsAt, endsAt)
    and answers 200, which Alertmanager takes as delivered (a 5xx would make it retry;
    not imitated, no test needs it)."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/alerts"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def first(self, alertname: str, status: str) -> Delivery | None:
        for delivery in self.deliveries:
            if delivery.alertname == alertname and delivery.status == status:
                return delivery
        return None

    def events(self) -> Iterator[tuple[str, str]]:
        """(status, alertname) of each alert's first firing and first resolved delivery,
        in order of arrival."""
        seen: set[tuple[str, str]] = set()
        for delivery in self.deliveries:
            key = (delivery.status, delivery.alertname)
            if key not in seen:
                seen.add(key)
                yield key

    async def wait_for(self, alertname: str, status: str, within: float) -> Delivery:
        """The first delivery of ``alertname`` with ``status``, woken by its arrival."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.first(alertname, status) is not None),
                    within,
                )
            except TimeoutError:
                raise AssertionError(
                    f"no {status} notification of {alertname} within {within:.0f} s; "
                    f"got {list(self.events())}"
                ) from None
        found = self.first(alertname, status)
        assert found is not None
        return found

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            body = json.loads(await reader.readexactly(length))
            arrived = time.time()
            async with self._changed:
                self.bodies.append(body)
                for alert in body["alerts"]:
                    self.deliveries.append(
                        Delivery(
                            arrived,
                            alert["status"],
                            alert["labels"],
                            alert["annotations"],
                            alert["startsAt"],
                            alert["endsAt"],
                        )
                    )
                self._changed.notify_all()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
