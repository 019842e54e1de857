"""The compliance pages in a real browser: headless Chromium (Debian's) against a real uvicorn coordinator.

Skipped only when /usr/bin/chromium is missing outside CI; with ``CI`` set, a missing browser fails.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coordinator.audit.chain import verify_export
from tests.support.coordinator import BOOT, World

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 60.0


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing in CI: install Debian's chromium package (.ci/run does)")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI is not set, so skipping")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A real coordinator process on a free loopback port over a SQLite file; yields (base URL, db path)."""
    _need_chromium()
    tmp = tmp_path_factory.mktemp("browser")
    db, log, port = tmp / "coord.db", tmp / "server.log", _free_port()
    env = {**os.environ, "TANDEM_COORD_DATABASE_URL": f"sqlite:///{db}", "TANDEM_COORD_BOOTSTRAP_TOKEN": BOOT,
           "TANDEM_COORD_SIGNING_KEY_PATH": str(tmp / "coord.key")}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "serve", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, url, log)
        yield url, db
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def world(server) -> Iterator[World]:
    """Parties, users, datasets and one job, created through the HTTP API."""
    with httpx.Client(base_url=server[0], timeout=30) as client:
        world = World(client).populate()
        world.job = world.submit()
        yield world


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def _sign_in(browser, url: str, token: str):
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.goto(f"{url}/audit")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return context, page


def test_auditor_reviews_a_job_and_downloads_a_verifiable_export(server, world, browser, tmp_path):
    url = server[0]
    job_id = world.job["id"]
    context, page = _sign_in(browser, url, world.tokens["auditor"])

    assert "Chain verified" in page.inner_text("#chain")
    cookie = next(c for c in context.cookies() if c["name"] == "tandem_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert world.tokens["auditor"] not in page.url

    page.fill("input[name=job]", str(job_id))
    page.click("form.f button[type=submit]")
    page.wait_for_load_state()
    objects = page.locator("#events tbody tr td:nth-child(5)").all_inner_texts()
    actions = page.locator("#events tbody tr td:nth-child(4)").all_inner_texts()
    assert f"job={job_id}" in page.url and set(objects) == {f"job:{job_id}"}
    assert {"job.submitted", "policy.decided", "job.status"} <= set(actions)

    page.click(f"a[href='/audit/jobs/{job_id}']")
    page.wait_for_load_state()
    assert world.job["digest"] in page.inner_text("#job") and "Chain verified" in page.inner_text("#chain")
    key = page.inner_text("#key")
    assert page.inner_text("#verify") == f"python -m coordinator.audit.chain verify audit.jsonl --key {key}"

    with page.expect_download() as download:
        page.click("#export")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "audit.jsonl"
    with saved.open("rb") as fh:
        report = verify_export(fh, key)
    assert report.ok, report.reason
    context.close()


def test_non_auditor_token_is_refused(server, world, browser):
    context, page = _sign_in(browser, server[0], world.tokens["bank_admin"])
    assert "may not view the audit pages" in page.content()
    assert not any(c["name"] == "tandem_session" for c in context.cookies())
    page.goto(f"{server[0]}/audit")
    assert page.locator("input[name=token]").count() == 1 and page.locator("#events").count() == 0
    context.close()


def test_an_edited_row_shows_tampered_after_reload(server, world, browser):
    url, db = server
    context, page = _sign_in(browser, url, world.tokens["auditor"])
    assert "Chain verified" in page.inner_text("#chain")
    events = httpx.get(f"{url}/api/v1/audit/events", params={"limit": 1000}, headers=world.h("auditor")).json()
    seq = next(e["seq"] for e in events if e["action"] == "job.submitted")

    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER audit_event_no_update")  # the file's owner can
        conn.execute("UPDATE audit_event SET body = replace(body, 'bank_analyst', 'mallory') WHERE seq = ?", (seq,))
    page.click("#verify-full")  # a view re-hashes only new events; this link re-hashes every one

    assert f"Chain TAMPERED at seq {seq}" in page.inner_text("#chain")
    assert page.locator("#export").count() == 0
    context.close()


def test_missing_chromium_skips_locally_but_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="CI is not set"):
        _need_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="missing in CI"):
        _need_chromium()
