"""The compliance pages in a real browser: headless Chromium (Debian's) against a real uvicorn coordinator.

Skipped only when /usr/bin/chromium is missing outside CI; with ``CI`` set, a missing browser fails.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coordinator.audit.chain import verify_export
from tests.support.browser import chromium, coordinator_process, need_chromium, sign_in
from tests.support.coordinator import World

pytestmark = pytest.mark.browser

@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A real coordinator process on a free loopback port over a SQLite file; yields (base URL, db path)."""
    need_chromium()
    with coordinator_process(tmp_path_factory.mktemp("browser")) as pair:
        yield pair


@pytest.fixture(scope="module")
def world(server) -> Iterator[World]:
    """Parties, users, datasets and one job, created through the HTTP API."""
    with httpx.Client(base_url=server[0], timeout=30) as client:
        world = World(client).populate()
        world.job = world.submit()
        yield world


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b


def _sign_in(browser, url: str, token: str):
    return sign_in(browser, url, token)


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


def test_a_party_admin_signs_in_to_its_own_jobs_and_is_refused_the_audit_log(server, world, browser):
    context, page = _sign_in(browser, server[0], world.tokens["bank_admin"])
    assert page.url.endswith("/console/my-jobs") and page.locator("#my-jobs").count() == 1
    page.goto(f"{server[0]}/audit")
    assert "may not call this endpoint" in page.content() and page.locator("#events").count() == 0
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
    import tests.support.browser as support

    monkeypatch.setattr(support, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="CI is not set"):
        need_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="missing in CI"):
        need_chromium()
