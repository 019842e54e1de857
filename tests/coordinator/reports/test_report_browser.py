"""The report pages in a real browser: an auditor reads a job's report and downloads its PDF.

Headless Debian Chromium (Playwright) against a real coordinator process. With ``TANDEM_SCREENSHOTS`` set to
a directory, full-page screenshots of the report pages and page 1 of the PDF (``pdftoppm``) are written there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coordinator import report_proof
from tests.coordinator.reports.support import run_job
from tests.support.browser import chromium, coordinator_process, need_chromium, sign_in
from tests.support.coordinator import API, World

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    need_chromium()
    with coordinator_process(tmp_path_factory.mktemp("reports")) as (url, _):
        yield url


@pytest.fixture(scope="module")
def world(server) -> Iterator[World]:
    with httpx.Client(base_url=server, timeout=30) as client:
        world = World(client).populate()
        world.job = run_job(world)
        yield world


def _shots() -> Path | None:
    target = os.environ.get("TANDEM_SCREENSHOTS")
    if not target:
        return None
    Path(target).mkdir(parents=True, exist_ok=True)
    return Path(target)


def _render_first_page(pdf: Path, out_prefix: Path) -> Path:
    subprocess.run(["pdftoppm", "-png", "-r", "90", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(out_prefix)],
                   check=True, capture_output=True)
    return out_prefix.with_suffix(".png")


def test_an_auditor_reads_a_jobs_report_and_downloads_its_pdf(server, world, tmp_path):
    job_id, shots = world.job["id"], _shots()
    with chromium() as browser:
        context, page = sign_in(browser, server, world.tokens["auditor"])
        page.goto(f"{server}/console/reports/jobs/{job_id}.html")
        heading = page.inner_text("h1")
        body = page.inner_text("body")
        if shots:
            page.screenshot(path=str(shots / "report_job.png"), full_page=True)
        with page.expect_download() as download_info:
            page.click("#pdf")
        download = download_info.value
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        page.goto(f"{server}/console/reports/period.html")
        period_heading = page.inner_text("h1")
        if shots:
            page.screenshot(path=str(shots / "report_period.png"), full_page=True)
        context.close()

    assert heading == f"Compliance report: job {job_id}"
    assert "12,345" in body and "party:telco" in body and "count = 812" in body
    assert period_heading.startswith("Compliance report: ") and " to " in period_heading
    assert download.suggested_filename == f"tandem-job-{job_id}-report.pdf"
    data = saved.read_bytes()
    assert data.startswith(b"%PDF-")
    proof = report_proof.read_proof(data)
    assert proof["report"]["jobs"][0]["id"] == job_id
    export = httpx.get(f"{server}{API}/audit/export", headers=world.h("auditor"), timeout=30).content
    key = httpx.get(f"{server}{API}/audit/public-key", timeout=30).json()["public_key"]
    check = report_proof.verify_report(proof, export.splitlines(keepends=True), key)
    assert check.ok, check.lines
    if shutil.which("pdftoppm"):
        png = _render_first_page(saved, (shots or tmp_path) / "report_pdf")
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
    print(f"downloaded {saved.name} ({len(data)} bytes); verified against the export: {check.lines[-1]}")


def test_a_browser_without_an_auditor_session_gets_a_refusal_not_the_report(server, world):
    job_id = world.job["id"]
    with chromium() as browser:
        context, page = sign_in(browser, server, world.tokens["bank_analyst"])  # a party user's session
        response = page.goto(f"{server}/console/reports/jobs/{job_id}.pdf")
        status, kind = response.status, response.headers.get("content-type", "")
        context.close()
        anonymous = browser.new_context()
        page = anonymous.new_page()
        response = page.goto(f"{server}/console/reports/jobs/{job_id}.pdf")
        signed_out, text = response.status, page.inner_text("body")
        anonymous.close()

    assert status == 403 and "pdf" not in kind
    assert signed_out == 401 and "API token" in text
