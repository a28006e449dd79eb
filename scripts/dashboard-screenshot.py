#!/usr/bin/env python3
"""Take the README's picture of the dashboard (docs/dashboard.png) from a real system.

Runs ``sluice up --demo`` (its embedded Redis, the queue ``inbound``, 50 demo conversations
at 5 messages a second against the Chatwoot simulator, exactly as ``make demo``), lets the
demo traffic flow for ``--minutes`` so the charts have some history, then signs in with
Debian's Chromium (driven by Playwright, as the browser test does) and saves the 1280x800
overview in the light scheme. The browser test's screenshots show a test queue and are
test artifacts (artifacts/screenshots/); this one is for people reading the README.

    .venv/bin/python scripts/dashboard-screenshot.py            # about 11 minutes
    .venv/bin/python scripts/dashboard-screenshot.py --minutes 2 --out /tmp/look.png

Then look at the picture before committing it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("SLUICE_TEST_CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, demo: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if demo.poll() is not None:
            sys.exit(f"sluice up --demo ended early (exit {demo.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"the dashboard did not answer at {url} within {timeout_s:.0f} s")


async def shoot(base: str, token: str, out: Path) -> None:
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = await browser.new_page(viewport={"width": 1280, "height": 800}, color_scheme="light")
        await page.goto(base + "/dashboard/login")
        await page.fill("#token", token)
        await page.click("#login-submit")
        await expect(page.locator("#conn")).to_have_text("live", timeout=20_000)
        for chart in ("throughput", "sla", "depth", "util"):
            await expect(page.locator(f"#chart-{chart} .uplot")).to_have_count(1)
        # two snapshots: the tiles show live figures, not the first render
        updated = await page.locator("#updated").text_content()
        await expect(page.locator("#updated")).not_to_have_text(updated or "", timeout=10_000)
        out.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(out), animations="disabled")
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="demo traffic before the shot")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args()
    port, token = free_port(), secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SLUICE_QUEUE")}
    env["SLUICE_ADMIN_TOKEN"] = token
    sluice = Path(sys.executable).with_name("sluice")
    command = [str(sluice), "up", "--demo", "--host", "127.0.0.1", "--port", str(port)]
    demo = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/dashboard/login", demo)
        print(f"demo traffic for {args.minutes:g} min ...", flush=True)
        time.sleep(args.minutes * 60)  # history for the charts, not synchronization
        asyncio.run(shoot(base, token, args.out))
        print(f"saved {args.out}")
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()


if __name__ == "__main__":
    main()
