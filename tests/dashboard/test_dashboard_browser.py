"""The dashboard end to end in a real headless Chromium (Debian's ``chromium`` driven by
Playwright; no browser is ever downloaded), looked at as a person would.

The API runs on a loopback port against the real Redis, with its alert evaluator on a short
interval, next to an in-process worker and a producer, so messages really flow: the test logs
in, watches tiles update, pauses and resumes from the UI, finds a message's timeline (with
the broker that answered), retries a dead letter and acknowledges an alert.

What a person sees is checked too, in light and dark (``prefers-color-scheme``, switched
live with Playwright's media emulation):

- no text box overlaps another on the sign-in page, the overview (the whole page) and the
  phone view (390x844), measured from the boxes of the rendered text and controls;
- an accessibility audit with axe-core (fetched from the npm registry by
  ``scripts/fetch-axe.sh``; the audit skips with the reason when it is missing): no
  serious or critical violation on the sign-in page, the overview, deadlines, search, controls and
  alerts;
- screenshots with stable names land in ``artifacts/screenshots/`` (git-ignored, a test
  artifact looked at before each release): ``signin``, ``overview``, ``full``, ``alerts``,
  ``dead-letters``, ``accounts``, ``controls``, ``toast``, ``drain-confirmation``, ``search``,
  ``deadlines``, ``brokers`` (circuit breakers and the replay of dead letters by filter),
  ``phone``, ``phone-full`` and ``phone-brokers``, each ``-light`` and ``-dark``.

The README's picture (docs/dashboard.png) is not taken here: a test queue is no system to
show. ``scripts/dashboard-screenshot.py`` takes it from ``sluice up --demo``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from sluice import Job, NonRetryableError, Queue, Worker
from sluice.alerts.config import load_alert_settings
from sluice.api.server import ApiServer
from sluice.broker.breaker import CircuitBreaker, Outcome
from sluice.queue.fairness import FairnessCaps
from sluice.settings.breaker import load_breaker_settings

from ..api.conftest import TOKEN
from ..integration.conftest import delete_queue_keys
from .test_dashboard_api import dashboard_app

CHROMIUM = os.environ.get("SLUICE_TEST_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
# scripts/fetch-axe.sh puts it here (make test runs it); SLUICE_TEST_AXE names another copy.
AXE = Path(
    os.environ.get("SLUICE_TEST_AXE", ROOT / ".venv/tools/axe/node_modules/axe-core/axe.min.js")
)
HAVE_AXE = AXE.is_file()
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCHEMES = ("light", "dark")
PAGE_BACKGROUND = {"light": "rgb(245, 246, 248)", "dark": "rgb(15, 18, 22)"}  # --bg
CHARTS = ("throughput", "sla", "depth", "util", "concurrency")

if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(
        f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install -y chromium) "
        "or set SLUICE_TEST_CHROMIUM",
        allow_module_level=True,
    )
playwright_api = pytest.importorskip(
    "playwright.async_api", reason="pip install playwright (the browser comes from Debian)"
)
expect = playwright_api.expect


@dataclass
class Stack:
    url: str
    queue: Queue
    dead_ids: tuple[str, str]  # two messages whose first attempt fails for good
    sent: list[tuple[str, str]]  # (message id, job id) of produced messages


@dataclass
class Findings:
    """What the looks found; reported together at the end, so one run shows them all."""

    axe: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    audited: list[str] = field(default_factory=list)


@pytest.fixture
async def stack(
    redis_url: str, redis_client: aioredis.Redis, queue_name: str
) -> AsyncIterator[Stack]:
    # Alert on any failed attempt, evaluated twice a second, so the dead letter fires one.
    alerts = load_alert_settings(
        {
            "SLUICE_ALERT_FAILURE_RATE_WARNING": "0.001",
            "SLUICE_ALERT_FAILURE_RATE_MIN_SAMPLES": "1",
            "SLUICE_ALERT_FOR_S": "0",
            "SLUICE_ALERT_EVALUATION_INTERVAL_S": "0.5",
        }
    )
    app = dashboard_app(redis_url, queue_name, alert_settings=alerts, run_evaluator=True)
    server = ApiServer(app, "127.0.0.1", 0)
    url = await server.start()
    queue = Queue(queue_name, redis=redis_client)
    failed_once: set[str] = set()

    async def handler(job: Job) -> None:
        job.mark("broker_assigned")
        job.note("broker", "template-bot")  # as the reply pipeline notes it
        if job.payload.get("fail") and job.id not in failed_once:
            failed_once.add(job.id)  # fails once; a retried dead letter then succeeds
            raise NonRetryableError("upstream refused the message (test)")
        await asyncio.sleep(0.02)

    worker = Worker(queue, handler, concurrency=4, handle_signals=False)
    worker_task = asyncio.create_task(worker.run())
    dead_ids = (
        await queue.enqueue("conv-dead", {"fail": True}, id="dead-msg-1"),
        await queue.enqueue("conv-dead-2", {"fail": True}, id="dead-msg-2"),
    )
    sent: list[tuple[str, str]] = []

    async def produce() -> None:
        n = 0
        while True:
            n += 1
            message_id = f"msg-{n}"
            job_id = await queue.enqueue(f"conv-{n % 7}", {"text": f"hello {n}"}, id=message_id)
            # What set its deadline, as the intake records and counts it (sluice.deadlines).
            await queue.redis.hset(queue.keys.job(job_id), "n:deadline", "rule:vip")
            await queue.redis.hincrby(queue.keys.deadline_sources, "rule:vip", 1)
            sent.append((message_id, job_id))
            await asyncio.sleep(0.15)  # the arrival rate, not synchronization

    producer = asyncio.create_task(produce())
    try:
        yield Stack(url, queue, dead_ids, sent)
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
        await worker.stop()
        await worker_task
        await server.stop()
        await delete_queue_keys(redis_client, queue_name)


async def _shot(target: Any, name: str, **options: Any) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await target.screenshot(path=str(path), animations="disabled", **options)
    return path


# Text boxes drawn over each other, measured in the page: every visible element's own text
# (the line boxes of its text nodes, clipped by the scrolling or clipping boxes around it)
# and every control's box. Only elements that are neither ancestor nor descendant of each
# other are compared (a button and its label, a row and its cells are nested on purpose);
# a pair overlaps when the boxes share more than 1 px each way.
OVERLAPS_JS = """
() => {
  const clip = (el, r) => {
    let { left, top, right, bottom } = r;
    for (let a = el; a && a !== document.documentElement; a = a.parentElement) {
      const cs = getComputedStyle(a);
      if (cs.overflowX === "visible" && cs.overflowY === "visible") continue;
      const b = a.getBoundingClientRect();
      left = Math.max(left, b.left); top = Math.max(top, b.top);
      right = Math.min(right, b.right); bottom = Math.min(bottom, b.bottom);
    }
    return { left, top, right, bottom };
  };
  const label = (el) => {
    let name = el.tagName.toLowerCase();
    if (el.id) name += "#" + el.id;
    else if (el.classList.length) name += "." + Array.from(el.classList).join(".");
    const parent = el.parentElement && el.parentElement.closest("[id]");
    const where = parent ? parent.id + " > " : "";
    const text = (el.value || el.textContent || "").trim().replace(/\\s+/g, " ").slice(0, 30);
    return where + name + (text ? " '" + text + "'" : "");
  };
  const controls = new Set(["INPUT", "BUTTON", "SELECT", "TEXTAREA"]);
  const items = [];
  for (const el of document.body.querySelectorAll("*")) {
    if (!el.checkVisibility({ opacityProperty: true, visibilityProperty: true })) continue;
    let rects = [];
    if (controls.has(el.tagName)) rects = [el.getBoundingClientRect()];
    else {
      for (const n of el.childNodes) {
        if (n.nodeType !== Node.TEXT_NODE || !n.textContent.trim()) continue;
        const range = document.createRange();
        range.selectNodeContents(n);
        rects.push(...range.getClientRects());
      }
    }
    rects = rects.map((r) => clip(el, r));
    rects = rects.filter((r) => r.right - r.left >= 1 && r.bottom - r.top >= 1);
    if (rects.length) items.push({ el, rects });
  }
  const hits = [];
  const over = (p, q) =>
    Math.min(p.right, q.right) - Math.max(p.left, q.left) > 1 &&
    Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top) > 1;
  for (let i = 0; i < items.length; i++) {
    for (let j = i + 1; j < items.length; j++) {
      const a = items[i], b = items[j];
      if (a.el.contains(b.el) || b.el.contains(a.el)) continue;
      if (!a.rects.some((p) => b.rects.some((q) => over(p, q)))) continue;
      hits.push(label(a.el) + "  ×  " + label(b.el));
    }
  }
  return { hits, measured: items.length };
}
"""


async def _overlaps(page: Any, view: str, found: Findings) -> None:
    """Record the text boxes of ``view`` that overlap (measured at the top of the page, so
    the sticky bar covers nothing)."""
    await page.evaluate("window.scrollTo(0, 0)")
    result = await page.evaluate(OVERLAPS_JS)
    assert result["measured"] >= 5, f"{view}: only {result['measured']} text boxes measured"
    found.overlaps += [f"{view}: {hit}" for hit in result["hits"]]


async def _audit(page: Any, view: str, found: Findings, *include: str) -> None:
    """axe-core on the page (or on the ``include`` selectors): serious and critical
    violations are recorded with their rule, help text and elements. No rule is
    disabled."""
    if not HAVE_AXE:
        return
    context = "document" if not include else f"{{ include: {list(include)!r} }}"
    result = await page.evaluate(
        f"async () => (await axe.run({context}, {{ resultTypes: ['violations'] }})).violations"
        ".map((v) => ({ id: v.id, impact: v.impact, help: v.help,"
        " targets: v.nodes.map((n) => n.target.join(' ')) }))"
    )
    found.audited.append(view)
    for v in result:
        if v["impact"] in ("serious", "critical"):
            targets = ", ".join(v["targets"][:6]) + (" ..." if len(v["targets"]) > 6 else "")
            found.axe.append(f"{view}: [{v['impact']}] {v['id']}: {v['help']} -> {targets}")


async def _scheme(page: Any, scheme: str) -> None:
    """Switch ``prefers-color-scheme`` live; wait until the page and its charts show it."""
    await page.emulate_media(color_scheme=scheme)
    await expect(page.locator("body")).to_have_css("background-color", PAGE_BACKGROUND[scheme])
    if await page.locator("#charts").count():
        for chart in CHARTS:  # charts redraw in the scheme's colours
            await expect(page.locator(f"#chart-{chart}")).to_have_attribute("data-scheme", scheme)


@pytest.mark.timeout(240)
async def test_dashboard_in_chromium(stack: Stack) -> None:
    found = Findings()
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS
        )
        try:
            await _run(browser, stack, found)
        finally:
            await browser.close()
    problems = [*found.overlaps, *found.axe]
    assert not problems, "what a person would see:\n" + "\n".join(problems)
    if not HAVE_AXE:
        pytest.skip(
            f"everything passed but the accessibility audit: no axe-core at {AXE} "
            "(scripts/fetch-axe.sh .venv/tools fetches it; make test runs it)"
        )
    views = (
        "sign-in",
        "overview",
        "deadlines",
        "alerts",
        "accounts",
        "error toast",
        "controls",
        "search",
        "brokers",
    )
    assert sorted(found.audited) == sorted(f"{v} {s}" for v in views for s in SCHEMES)


async def _new_context(browser: Any, **options: Any) -> Any:
    """A browser context whose pages carry axe-core (injected before the page's own
    scripts, which the dashboard's Content-Security-Policy would refuse as a script tag)."""
    context = await browser.new_context(**options)
    if HAVE_AXE:
        await context.add_init_script(path=str(AXE))
    return context


def _watch(page: Any, errors: list[str]) -> None:
    """Page errors, failed requests and console errors (a Content-Security-Policy refusal
    among them) are collected; the test fails on any."""
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/dashboard/login")
            else None
        ),
    )
    page.on(
        "console",
        lambda m: (
            errors.append(f"console: {m.text}")
            # a failed request is already recorded by its response
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )


async def _run(browser: Any, stack: Stack, found: Findings) -> None:
    expect.set_options(timeout=20_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):  # the folder shows this run's pictures only
        old.unlink()
    context = await _new_context(browser, viewport=DESKTOP, color_scheme="light")
    page = await context.new_page()
    errors: list[str] = []
    _watch(page, errors)

    # --- sign in (the token goes in a form body; the URL never carries it)
    await page.goto(stack.url + "/dashboard")
    await expect(page).to_have_url(stack.url + "/dashboard/login")
    await page.fill("#token", "wrong")
    await page.click("#login-submit")
    await expect(page.locator(".error")).to_have_text("Wrong token.")
    for scheme in SCHEMES:
        await _scheme(page, scheme)
        await _overlaps(page, f"sign-in {scheme}", found)
        await _shot(page, f"signin-{scheme}")
        await _audit(page, f"sign-in {scheme}", found)
    await _scheme(page, "light")
    await page.fill("#token", TOKEN)
    await page.click("#login-submit")
    await expect(page).to_have_url(stack.url + "/dashboard")
    assert TOKEN not in page.url
    await expect(page.locator("#conn")).to_have_text("live")

    # --- tiles update while messages flow
    throughput = page.locator("#tile-throughput .sub")
    await expect(throughput).not_to_have_text("")
    first = await throughput.text_content()
    await expect(throughput).not_to_have_text(first or "")
    await expect(page.locator("#tile-sla-1m .value")).to_have_text("100.0 %")
    await expect(page.locator("#tile-sla-1m")).to_have_attribute("data-level", "ok")
    await expect(page.locator("#tile-paused .value")).to_have_text("running")
    await expect(page.locator("#workers-table tbody tr")).to_have_count(1)
    await expect(page.locator("#workers-table tbody tr td").first).not_to_contain_text("stale")
    await expect(page.locator("#chart-throughput .uplot")).to_have_count(1)
    await expect(page.locator("#chart-sla .u-legend")).to_contain_text("10 s warning")
    # What set the deadlines: the intake's counts and the switches (docs/priorities.md).
    await expect(page.locator("#deadlines-table tbody")).to_contain_text("rule:vip")
    await expect(page.locator("#deadlines-switches")).to_contain_text("waiting_since off")
    for scheme in SCHEMES:
        await _scheme(page, scheme)
        await _shot(page.locator("#deadlines"), f"deadlines-{scheme}")
        await _audit(page, f"deadlines {scheme}", found, "#deadlines")
    await _scheme(page, "light")

    # --- an alert fires (the dead letter failed an attempt) and is acknowledged
    alert = page.locator('.alert[data-rule="failure_rate_high"]')
    await expect(alert).to_be_visible()
    await expect(alert.locator(".alert-state")).to_contain_text("not acknowledged")
    await alert.locator("button.ack").click()
    await expect(alert.locator(".alert-state")).to_contain_text("acknowledged by dashboard")
    # A silence duration being typed survives the live updates (the card is not rebuilt).
    minutes = alert.locator("input.minutes")
    await minutes.fill("90")
    updated = page.locator("#updated")
    for _ in range(2):  # two more snapshots
        await expect(updated).not_to_have_text(await updated.text_content() or "")
    await expect(minutes).to_have_value("90")
    await page.locator("#alerts details").first.evaluate("d => d.open = true")
    await expect(page.locator("#alerts-history")).to_contain_text("acknowledged")
    await page.locator("#alerts details").nth(1).evaluate("d => d.open = true")
    await expect(page.locator("#rules-table")).to_contain_text("failure_rate_high")
    retried, stale = stack.dead_ids
    row = page.locator(f'#dead-table tr[data-job="{retried}"]')
    await expect(row).to_contain_text("upstream refused the message")
    stale_row = page.locator(f'#dead-table tr[data-job="{stale}"]')
    await expect(stale_row).to_contain_text("upstream refused the message")

    # --- the overview as a person sees it, light and dark: nothing drawn over anything,
    # no serious accessibility problem, and the pictures
    await expect(page.locator("#toast")).not_to_have_class(re.compile("show"))
    for scheme in SCHEMES:
        await _scheme(page, scheme)
        await _overlaps(page, f"overview {scheme}", found)
        await _shot(page, f"overview-{scheme}")
        await _shot(page, f"full-{scheme}", full_page=True)
        await _shot(page.locator("#alerts"), f"alerts-{scheme}")
        await _shot(page.locator("#dead"), f"dead-letters-{scheme}")
        await _shot(page.locator("#concurrency"), f"concurrency-{scheme}")
        await _audit(page, f"overview {scheme}", found)
        await _audit(page, f"alerts {scheme}", found, "#alerts")
    await _scheme(page, "light")

    # --- the accounts panel (tenant fairness): caps switched on show in it, with the
    # accounts whose messages flow ("<account>:<conversation>" keys, as the intake's)
    await stack.queue.set_fairness(FairnessCaps(concurrency=1))
    for n in range(6):
        await stack.queue.enqueue(f"{12 if n < 4 else 34}:{n}", {"text": "flood"})
    panel = page.locator("#fairness")
    await expect(panel.locator("#fairness-caps")).to_have_text("cap per account: 1 in flight")
    await expect(panel.locator("#fairness-table tbody")).to_contain_text("12")
    for scheme in SCHEMES:
        await _scheme(page, scheme)
        await _shot(panel, f"accounts-{scheme}")
        await _audit(page, f"accounts {scheme}", found, "#fairness")
    await _scheme(page, "light")
    # Off again, and the panel says so, before the rest of the page is used.
    await stack.queue.set_fairness(FairnessCaps())
    await expect(panel.locator("#fairness-caps")).to_have_text("fairness off")

    # --- retry a dead letter from the UI
    toast = page.locator("#toast")
    await row.locator("button", has_text="Retry").click()
    await expect(toast).to_contain_text(f"Job {retried} queued again")
    await expect(row).to_have_count(0)
    await _wait_state(stack.queue, retried, "completed")
    # ...and one that someone else deleted meanwhile: the error says so, the row goes.
    # The error toast stays 4 s: its look in both schemes is taken at once.
    assert await stack.queue.purge_dead([stale]) == 1
    await stale_row.locator("button", has_text="Retry").click()
    await expect(toast).to_have_text(f"job {stale} is not a dead letter")
    await expect(toast).to_have_class("show bad")
    assert errors == [f"404 {stack.url}/dashboard/api/dead-letters/{stale}/retry"]
    errors.clear()  # that refusal was the point
    for scheme in SCHEMES:
        await _scheme(page, scheme)
        await _shot(toast, f"toast-error-{scheme}")
        await _audit(page, f"error toast {scheme}", found, "#toast")
    await _scheme(page, "light")
    await expect(stale_row).to_have_count(0)

    # --- pause from the UI: the queue stops, waiting grows; resume: it drains again
    await page.click("#btn-pause")
    await expect(page.locator("#confirm")).to_be_visible()
    await page.click("#confirm-ok")
    await expect(toast).to_have_text("Queue paused")
    await expect(page.locator("#tile-paused .value")).to_have_text("paused")
    await expect(page.locator("#tile-paused")).to_have_attribute("data-level", "warn")
    assert (await stack.queue.counts())["paused"] is True
    # The toast stays 4 s: its look in both schemes is taken at once.
    await page.locator("#controls").scroll_into_view_if_needed()
    for scheme in SCHEMES:
        await _scheme(page, scheme)
        await expect(toast).to_have_class("show")
        await _shot(toast, f"toast-{scheme}")
        await _audit(page, f"controls {scheme}", found, "#controls", "#toast")
    await _scheme(page, "light")
    await page.wait_for_function(
        "() => Number(document.querySelector('#ctl-waiting').textContent) >= 5", timeout=20_000
    )
    for scheme in SCHEMES:
        await _scheme(page, scheme)
        await _shot(page.locator("#controls"), f"controls-{scheme}")
    await _scheme(page, "light")
    await page.click("#btn-drain")  # the confirmation shows what would be removed...
    await expect(page.locator("#confirm-text")).to_contain_text("permanently removes")
    await _shot(page.locator("#confirm"), "drain-confirmation-light")
    await page.click("#confirm-cancel")  # ...and cancelling removes nothing
    await page.click("#btn-resume")
    await expect(page.locator("#tile-paused .value")).to_have_text("running")
    await page.wait_for_function(
        "() => Number(document.querySelector('#ctl-waiting').textContent) <= 2", timeout=20_000
    )
    assert (await stack.queue.counts())["paused"] is False

    # --- search a message: its timeline as a waterfall with the SLA verdict and the broker
    message_id, job_id = stack.sent[3]
    await _wait_state(stack.queue, job_id, "completed")
    await page.fill("#search-q", message_id)
    await page.click("#search-form button[type=submit]")
    await expect(page.locator("#verdict")).to_contain_text("within SLA")
    await expect(page.locator("#timeline .tl-head")).to_contain_text(f"Job {job_id}")
    await expect(page.locator("#timeline .tl-head")).to_contain_text("answered by template-bot")
    await expect(page.locator("#tl-deadline")).to_have_text("rule:vip")
    hops = page.locator("#timeline .wf-hop")
    await expect(hops.first).to_have_text("enqueued")
    await expect(hops.last).to_have_text("completed")
    await page.locator("#toast").evaluate("t => { t.className = ''; }")
    for scheme in SCHEMES:
        await _scheme(page, scheme)
        await _shot(page.locator("#search"), f"search-{scheme}")
        await _audit(page, f"search {scheme}", found, "#search")
    await _scheme(page, "light")
    conversation = stack.sent[3][0]  # then a conversation's recent messages
    key = f"conv-{int(conversation.split('-')[1]) % 7}"
    await page.fill("#search-q", key)
    await page.click("#search-form button[type=submit]")
    await expect(page.locator("#search-results")).to_contain_text(f"Conversation {key}")
    assert await page.locator("#search-results .matches li").count() >= 2

    # --- brokers: a circuit breaker opened by a worker, and the replay of dead letters by
    # filter (a dry run shows the count, the replay requeues that many after confirming)
    await _open_breaker(stack.queue, "llm-bot")
    buried = await stack.queue.enqueue("conv-dead-3", {"fail": True}, id="dead-msg-3")
    await _wait_state(stack.queue, buried, "dead")
    await page.click("#breakers-refresh")
    breaker_row = page.locator('#breakers-table tr[data-broker="llm-bot"]')
    await expect(breaker_row).to_have_attribute("data-state", "open")
    await expect(breaker_row).to_contain_text("failure ratio 1.00 over 2 calls")
    await page.fill("#rp-error", "upstream refused")
    await page.click("#rp-count")
    await expect(page.locator("#rp-result")).to_have_text("1 dead letter match")
    await expect(page.locator("#rp-replay")).to_be_enabled()
    await page.locator("#toast").evaluate("t => { t.className = ''; }")
    for scheme in SCHEMES:
        await _scheme(page, scheme)
        await _overlaps(page, f"brokers {scheme}", found)
        await _shot(page.locator("#healing"), f"brokers-{scheme}")
        await _audit(page, f"brokers {scheme}", found, "#healing")
    await _scheme(page, "light")
    await page.click("#rp-replay")
    await expect(page.locator("#confirm-title")).to_have_text("Replay 1 dead letter?")
    await page.click("#confirm-ok")
    await expect(page.locator("#rp-result")).to_have_text("1 requeued")
    await _wait_state(stack.queue, buried, "completed")

    # --- the phone, light and dark, reusing the session
    state = await context.storage_state()
    phone = await _new_context(
        browser, viewport=PHONE, color_scheme="light", storage_state=state, is_mobile=True
    )
    view = await phone.new_page()
    _watch(view, errors)
    await view.goto(stack.url + "/dashboard")
    await expect(view.locator("#conn")).to_have_text("live")
    await expect(view.locator("#chart-sla .uplot")).to_have_count(1)
    for scheme in SCHEMES:
        await _scheme(view, scheme)
        overflow = await view.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"phone {scheme}: the page scrolls sideways by {overflow}px"
        await _overlaps(view, f"phone {scheme}", found)
        await _shot(view, f"phone-{scheme}")
        await _shot(view, f"phone-full-{scheme}", full_page=True)
        await _shot(view.locator("#healing"), f"phone-brokers-{scheme}")
    await phone.close()

    # --- sign out: the session ends server-side
    await page.click("#logout")
    await expect(page).to_have_url(stack.url + "/dashboard/login")
    await context.close()
    assert not errors, errors


async def _open_breaker(queue: Queue, broker: str) -> None:
    """A worker's circuit breaker opening on two failed calls (what the pipeline records)."""
    settings = load_breaker_settings(
        {"SLUICE_BREAKER_ENABLED": "true", "SLUICE_BREAKER_MIN_CALLS": "2"}
    )
    breaker = CircuitBreaker(queue.redis, queue.keys, broker, settings)
    for _ in range(2):
        admission = await breaker.admit()
        await breaker.record(admission, Outcome.FAILURE, 20.0, "llm returned HTTP 503")


async def _wait_state(queue: Queue, job_id: str, state: str, timeout_s: float = 20) -> None:
    """Wait until a job reaches ``state`` (a condition on Redis, polled with a deadline)."""
    async with asyncio.timeout(timeout_s):
        while True:
            record = await queue.get_job(job_id)
            if record is not None and record.state == state:
                return
            await asyncio.sleep(0.05)
