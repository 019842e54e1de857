"""A job's outputs on the compliance job page, in headless Chromium against a real coordinator process.

The officer (clearance 5) reads every party's outputs as reported; the bank's analyst, through the API
and on its own job page in the browser, reads only the bank's, with level-4 values masked or
generalised. With ``TANDEM_SCREENSHOTS=DIR`` the pages are saved there as ``job_outputs.png`` and
``job_outputs_analyst.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.coordinator.test_coord_outputs_per_party import SENSITIVE, _finish, _sensitive_world
from tests.support.browser import chromium, coordinator_process, need_chromium, sign_in
from tests.support.coordinator import API, World

pytestmark = pytest.mark.browser


def test_the_officer_reads_every_partys_outputs_where_the_analyst_gets_them_masked(tmp_path: Path) -> None:
    # Prepare: a real coordinator, a job over level-4 fields that both nodes finished
    need_chromium()
    with coordinator_process(tmp_path / "coord") as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        world = World(client).populate()
        job = _sensitive_world(world)
        _finish(world, job, SENSITIVE, {"bank_queries": 500})
        analyst = client.get(f"{API}/jobs/{job['id']}", headers=world.h("bank_analyst")).json()["outputs"]

        # Execute
        with chromium() as browser:
            context, page = sign_in(browser, url, world.tokens["auditor"], start=f"/audit/jobs/{job['id']}")
            page.wait_for_selector("#outputs")
            bank = page.inner_text("table.outputs[data-party=bank]")
            telco = page.inner_text("table.outputs[data-party=telco]")
            _shot(page, "job_outputs.png")
            context.close()
            context, page = sign_in(browser, url, world.tokens["bank_analyst"])
            landed = page.url
            page.click(f"#my-jobs a[href='/console/my-jobs/{job['id']}']")
            page.wait_for_selector("#outputs")
            analyst_page = page.inner_text("#outputs")
            analyst_tables = page.locator("table.outputs").count()
            _shot(page, "job_outputs_analyst.png")
            context.close()

    # Assert
    print(f"officer's page, bank: {bank!r}; analyst's API view: {analyst}")
    assert "13812345534" in bank and "110105199001011234" in bank and "consent" in bank  # clearance 5
    assert "bank_queries\t500" in telco
    assert set(analyst) == {"bank"} and analyst["bank"]["msisdn"] == "138****5534"
    assert analyst["bank"]["id_number"] == "110105***********4" and "consent" not in analyst["bank"]
    print(f"analyst's page ({landed}): {analyst_page!r}")
    assert landed.endswith("/console/my-jobs") and analyst_tables == 1  # its own party's outputs only
    assert "138****5534" in analyst_page and "110105***********4" in analyst_page
    assert "13812345534" not in analyst_page and "110105199001011234" not in analyst_page
    assert "consent" not in analyst_page and "bank_queries" not in analyst_page


def _shot(page, name: str) -> None:
    folder = os.environ.get("TANDEM_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)
