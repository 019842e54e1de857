"""Lineage and the ledger cross-check in a real browser: headless Chromium against a real coordinator process.

The two nodes are real ledgers whose real ``CoordinatorClient`` reports to the coordinator over HTTP. The
auditor reads a job's lineage and a dataset's page, then uploads the audit export and both ledger exports
to the cross-check page: the clean run passes, a tampered ledger fails, a ledger given as the wrong node's
is refused, and the refusal is in the audit log. With ``TANDEM_SCREENSHOTS=DIR`` each page is saved there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.coordinator.lineage.federation import audit_export, nodes, run_overlap
from tests.support.browser import chromium, coordinator_process, need_chromium, sign_in
from tests.support.coordinator import API, World

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A real coordinator process; yields (base URL, db path)."""
    need_chromium()
    with coordinator_process(tmp_path_factory.mktemp("lineage")) as pair:
        yield pair


@pytest.fixture(scope="module")
def files(server, tmp_path_factory) -> Iterator[dict]:
    """One job run between two real ledgers against the server, and the three exports."""
    tmp = tmp_path_factory.mktemp("exports")
    with httpx.Client(base_url=server[0], timeout=30) as client:
        world = World(client).populate()
        pair = nodes(world, tmp, base_url=server[0])
        job = run_overlap(world, pair)
        yield {"world": world, "job": job, "audit": audit_export(world, tmp / "audit.jsonl"),
               "bank": pair["bank"].export(tmp / "bank.jsonl"), "telco": pair["telco"].export(tmp / "telco.jsonl"),
               "tmp": tmp}


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b


def _shot(page, name: str) -> None:
    folder = os.environ.get("TANDEM_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def _upload(page, files: dict, bank: Path, telco: Path, bank_party: str = "") -> None:
    page.goto(page.url.split("/console")[0] + "/console/crosscheck")
    page.set_input_files("input[name=audit]", str(files["audit"]))
    page.set_input_files("input[name=ledger_1]", str(bank))
    page.fill("input[name=party_1]", bank_party)
    page.set_input_files("input[name=ledger_2]", str(telco))
    page.click("#run-crosscheck")
    page.wait_for_load_state()


def test_an_auditor_reads_a_jobs_lineage_and_its_datasets(server, files, browser):
    url, world, job = server[0], files["world"], files["job"]
    context, page = sign_in(browser, url, world.tokens["auditor"], start=f"/console/jobs/{job['id']}/lineage")

    assert page.url.endswith(f"/console/jobs/{job['id']}/lineage")
    assert job["digest"] in page.inner_text("#job")
    rows = page.locator("#messages-bank tbody tr").all_inner_texts()
    print("bank messages:", rows)
    assert len(rows) == 3 and sum("psi.points" in r and "telco" in r for r in rows) == 2
    assert len(page.locator("#messages-telco tbody tr").all_inner_texts()) == 2
    assert "party:bank" in page.inner_text("#approvals") and "party:telco" in page.inner_text("#approvals")
    assert "key" in page.inner_text("#fields-0")
    _shot(page, "lineage.png")

    page.click(f"a[href='/console/datasets/{world.datasets['bank']}']")
    page.wait_for_load_state()
    assert page.locator("#jobs tbody tr").count() == 1 and str(job["id"]) in page.inner_text("#jobs")
    _shot(page, "dataset.png")
    context.close()


def test_the_cross_check_page_passes_a_clean_run_and_catches_tampering(server, files, browser):
    url, world = server[0], files["world"]
    context, page = sign_in(browser, url, world.tokens["auditor"], start="/console/crosscheck")

    _upload(page, files, files["bank"], files["telco"])
    outcome = page.inner_text("#outcome")
    print("clean:", outcome)
    assert outcome.startswith("Cross-check passed")
    assert page.inner_text("#findings") == "No findings."
    assert "signed head verify" in page.content()
    _shot(page, "crosscheck.png")

    records = [json.loads(line) for line in files["bank"].read_text().splitlines()]
    next(r for r in records if r["body"]["peer"] == "telco")["body"]["digest"] = "f" * 64
    tampered = files["tmp"] / "bank-tampered.jsonl"
    tampered.write_text("".join(json.dumps(r) + "\n" for r in records))
    _upload(page, files, tampered, files["telco"])
    print("tampered:", page.inner_text("#outcome"))
    assert page.inner_text("#outcome").startswith("Cross-check FAILED")
    assert "chain_broken" in page.inner_text("#findings")
    _shot(page, "crosscheck_failed.png")

    _upload(page, files, files["telco"], files["bank"], bank_party="bank")
    refusal = page.inner_text("#outcome")
    print("wrong node:", refusal)
    assert refusal.startswith("Refused") and "given as bank's ledger, but it is telco's" in refusal
    _shot(page, "crosscheck_refused.png")
    context.close()

    events = world.c.get(f"{API}/audit/events", params={"limit": 1000}, headers=world.h("auditor")).json()
    ran = [e["details"]["ok"] for e in events if e["action"] == "crosscheck.ran"]
    refused = [e for e in events if e["action"] == "crosscheck.refused"]
    assert ran == [True, False] and len(refused) == 1 and refused[0]["actor"] == "user:auditor"
