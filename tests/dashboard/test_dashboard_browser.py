"""The dashboard end to end in a real headless Chromium (Debian's ``chromium`` driven by
Playwright; no browser is ever downloaded).

The API runs on a loopback port against the real Redis, with its alert evaluator on a short
interval, next to an in-process worker and a producer, so messages really flow: the test logs
in, watches tiles update, pauses and resumes from the UI, finds a message's timeline, retries
a dead letter and acknowledges an alert. Screenshots of every view land in
``artifacts/screenshots/`` (git-ignored); the desktop overview is copied to
``docs/dashboard.png`` when SLUICE_UPDATE_DOCS_SCREENSHOT=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from sluice import Job, NonRetryableError, Queue, Worker
from sluice.alerts.config import load_alert_settings
from sluice.api.server import ApiServer

from ..api.conftest import TOKEN
from ..integration.conftest import delete_queue_keys
from .test_dashboard_api import dashboard_app

CHROMIUM = os.environ.get("SLUICE_TEST_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
DOCS_SHOT = ROOT / "docs" / "dashboard.png"
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
    dead_id: str
    sent: list[tuple[str, str]]  # (message id, job id) of produced messages


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
        if job.payload.get("fail") and job.id not in failed_once:
            failed_once.add(job.id)  # fails once; a retried dead letter then succeeds
            raise NonRetryableError("upstream refused the message (test)")
        await asyncio.sleep(0.02)

    worker = Worker(queue, handler, concurrency=4, handle_signals=False)
    worker_task = asyncio.create_task(worker.run())
    dead_id = await queue.enqueue("conv-dead", {"fail": True}, id="dead-msg-1")
    sent: list[tuple[str, str]] = []

    async def produce() -> None:
        n = 0
        while True:
            n += 1
            message_id = f"msg-{n}"
            job_id = await queue.enqueue(f"conv-{n % 7}", {"text": f"hello {n}"}, id=message_id)
            sent.append((message_id, job_id))
            await asyncio.sleep(0.15)  # the arrival rate, not synchronization

    producer = asyncio.create_task(produce())
    try:
        yield Stack(url, queue, dead_id, sent)
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


@pytest.mark.timeout(240)
async def _overlapping(page: Any, *selectors: str) -> list[tuple[str, str]]:
    """Pairs of the given elements whose boxes intersect on screen (text drawn over text)."""
    boxes = {sel: await page.locator(sel).first.bounding_box() for sel in selectors}
    hits = []
    for i, a in enumerate(selectors):
        for b in selectors[i + 1 :]:
            p, q = boxes[a], boxes[b]
            assert p is not None and q is not None, (a, b)
            if (
                p["x"] < q["x"] + q["width"]
                and q["x"] < p["x"] + p["width"]
                and p["y"] < q["y"] + q["height"]
                and q["y"] < p["y"] + p["height"]
            ):
                hits.append((a, b))
    return hits


async def test_dashboard_in_chromium(stack: Stack) -> None:
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS
        )
        try:
            await _run(browser, stack)
        finally:
            await browser.close()


async def _run(browser: Any, stack: Stack) -> None:
    expect.set_options(timeout=20_000)
    context = await browser.new_context(viewport=DESKTOP, color_scheme="light")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/dashboard/login")
            else None
        ),
    )

    # --- log in (the token goes in a form body; the URL never carries it)
    await page.goto(stack.url + "/dashboard")
    await expect(page).to_have_url(stack.url + "/dashboard/login")
    await page.fill("#token", "wrong")
    await page.click("#login-submit")
    await expect(page.locator(".error")).to_have_text("Wrong token.")
    await _shot(page, "login-desktop")
    assert (
        await _overlapping(page, ".login-box h1", ".login-box > .muted", "#token", ".error") == []
    )
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

    # --- an alert fires (the dead letter failed an attempt) and is acknowledged
    alert = page.locator('.alert[data-rule="failure_rate_high"]')
    await expect(alert).to_be_visible()
    await expect(alert.locator(".alert-state")).to_contain_text("not acknowledged")
    await alert.locator("button.ack").click()
    await expect(alert.locator(".alert-state")).to_contain_text("acknowledged by dashboard")
    await page.locator("#alerts details").first.evaluate("d => d.open = true")
    await expect(page.locator("#alerts-history")).to_contain_text("acknowledged")
    await page.locator("#alerts details").nth(1).evaluate("d => d.open = true")
    await expect(page.locator("#rules-table")).to_contain_text("failure_rate_high")

    # Overview screenshots: desktop light now; charts have a few points by now.
    await page.locator("#toast").evaluate("t => { t.className = ''; }")
    await page.evaluate("window.scrollTo(0, 0)")
    overview = await _shot(page, "overview-desktop-light")
    if os.environ.get("SLUICE_UPDATE_DOCS_SCREENSHOT") == "1":
        # Only on request: a test run must not dirty the working tree.
        shutil.copyfile(overview, DOCS_SHOT)
    await _shot(page, "full-desktop-light", full_page=True)
    for section in ("charts", "breakdown", "workers", "alerts"):
        await _shot(page.locator(f"#{section}"), f"{section}-desktop-light")

    # --- retry a dead letter from the UI
    row = page.locator(f'#dead-table tr[data-job="{stack.dead_id}"]')
    await expect(row).to_contain_text("upstream refused the message")
    await _shot(page.locator("#dead"), "dead-letters-desktop-light")
    await row.locator("button", has_text="Retry").click()
    await expect(page.locator("#toast")).to_contain_text(f"Job {stack.dead_id} queued again")
    await expect(row).to_have_count(0)
    await _wait_state(stack.queue, stack.dead_id, "completed")

    # --- pause from the UI: the queue stops, waiting grows; resume: it drains again
    await page.click("#btn-pause")
    await expect(page.locator("#confirm")).to_be_visible()
    await page.click("#confirm-ok")
    await expect(page.locator("#tile-paused .value")).to_have_text("paused")
    await expect(page.locator("#tile-paused")).to_have_attribute("data-level", "warn")
    assert (await stack.queue.counts())["paused"] is True
    await page.wait_for_function(
        "() => Number(document.querySelector('#ctl-waiting').textContent) >= 5", timeout=20_000
    )
    await page.click("#btn-drain")  # the confirmation shows what would be removed...
    await expect(page.locator("#confirm-text")).to_contain_text("permanently removes")
    await _shot(page.locator("#confirm"), "drain-confirmation-desktop-light")
    await page.click("#confirm-cancel")  # ...and cancelling removes nothing
    await _shot(page.locator("#controls"), "controls-paused-desktop-light")
    await page.click("#btn-resume")
    await expect(page.locator("#tile-paused .value")).to_have_text("running")
    await page.wait_for_function(
        "() => Number(document.querySelector('#ctl-waiting').textContent) <= 2", timeout=20_000
    )
    assert (await stack.queue.counts())["paused"] is False

    # --- search a message: its timeline as a waterfall with the SLA verdict
    message_id, job_id = stack.sent[3]
    await _wait_state(stack.queue, job_id, "completed")
    await page.fill("#search-q", message_id)
    await page.click("#search-form button[type=submit]")
    await expect(page.locator("#verdict")).to_contain_text("within SLA")
    await expect(page.locator("#timeline .tl-head")).to_contain_text(f"Job {job_id}")
    hops = page.locator("#timeline .wf-hop")
    await expect(hops.first).to_have_text("enqueued")
    await expect(hops.last).to_have_text("completed")
    await _shot(page.locator("#search"), "search-timeline-desktop-light")
    conversation = stack.sent[3][0]  # then a conversation's recent messages
    key = f"conv-{int(conversation.split('-')[1]) % 7}"
    await page.fill("#search-q", key)
    await page.click("#search-form button[type=submit]")
    await expect(page.locator("#search-results")).to_contain_text(f"Conversation {key}")
    assert await page.locator("#search-results .matches li").count() >= 2

    # --- dark desktop, and phone width in light and dark, reusing the session
    state = await context.storage_state()
    for name, viewport, scheme in (
        ("overview-desktop-dark", DESKTOP, "dark"),
        ("overview-phone-light", PHONE, "light"),
        ("overview-phone-dark", PHONE, "dark"),
    ):
        other = await browser.new_context(
            viewport=viewport, color_scheme=scheme, storage_state=state, is_mobile=viewport is PHONE
        )
        view = await other.new_page()
        await view.goto(stack.url + "/dashboard")
        await expect(view.locator("#conn")).to_have_text("live")
        await expect(view.locator("#chart-sla .uplot")).to_have_count(1)
        overflow = await view.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{name}: the page scrolls sideways by {overflow}px"
        await _shot(view, name)
        if viewport is PHONE:
            await _shot(view, name.replace("overview", "full"), full_page=True)
        await other.close()

    # --- sign out: the session ends server-side
    await page.click("#logout")
    await expect(page).to_have_url(stack.url + "/dashboard/login")
    await context.close()
    assert not errors, errors


async def _wait_state(queue: Queue, job_id: str, state: str, timeout_s: float = 20) -> None:
    """Wait until a job reaches ``state`` (a condition on Redis, polled with a deadline)."""
    async with asyncio.timeout(timeout_s):
        while True:
            record = await queue.get_job(job_id)
            if record is not None and record.state == state:
                return
            await asyncio.sleep(0.05)
