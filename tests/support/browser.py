"""Browser tests' shared parts: a real coordinator process, Debian's Chromium through Playwright, sign-in.

Skipped only when /usr/bin/chromium is missing outside CI; with ``CI`` set, a missing browser fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.coordinator import BOOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 60.0


def need_chromium() -> None:
    """Skip (outside CI) or fail (in CI) when Debian's Chromium is not installed."""
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing in CI: install Debian's chromium package (.ci/run does)")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI is not set, so skipping")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"coordinator exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/api/v1/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"coordinator not healthy after {START_TIMEOUT_S:.0f} s: {log.read_text()[-2000:]}")


@contextmanager
def coordinator_process(tmp: Path, **env: str) -> Iterator[tuple[str, Path]]:
    """A real coordinator process on a free loopback port over a SQLite file; yields (base URL, db path)."""
    tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp.chmod(0o700)
    db, log, port = tmp / "coord.db", tmp / "server.log", free_port()
    full = {**os.environ, "TANDEM_COORD_DATABASE_URL": f"sqlite:///{db}", "TANDEM_COORD_BOOTSTRAP_TOKEN": BOOT,
            "TANDEM_COORD_SIGNING_KEY_PATH": str(tmp / "coord.key"), **env}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "serve", "--port", str(port)],
                                env=full, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, url, log)
        yield url, db
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(browser: Any, url: str, token: str, start: str = "/audit") -> tuple[Any, Any]:
    """A new browser context signed in with ``token`` through the login form; returns (context, page)."""
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.goto(f"{url}{start}")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return context, page
