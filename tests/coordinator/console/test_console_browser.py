"""The officer's console in a real browser: headless Chromium (Debian's) against a real coordinator process.

The officer makes a key with ``tandem-bank job auditor-key``, is registered with its public half, signs
in, finds the job that waits in the inbox, reads its terms, signs it on the command line with
``job approve --sign-only`` (which prints the digest it recomputed and the signature), pastes the
signature into the page and sees the job leave the inbox; rejects another with a reason; an analyst
never reaches the approval form; the policy page lists every rule id. With ``TANDEM_SCREENSHOTS`` set
to a directory, full-page PNGs of the inbox, a job page and the policy page are saved there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from bank_node.settings import BankSettings
from coordinator.policy import RULE_IDS
from node.cli import build_cli
from tests.coordinator.console.conftest import add_id_datasets, submit_auditor_job
from tests.support.browser import chromium, coordinator_process, need_chromium, sign_in
from tests.support.coordinator import BOOT, World

pytestmark = pytest.mark.browser
bank_cli = build_cli(BankSettings, "bank")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    need_chromium()
    with coordinator_process(tmp_path_factory.mktemp("console")) as pair:
        yield pair


@pytest.fixture(scope="module")
def world(server) -> Iterator[World]:
    with httpx.Client(base_url=server[0], timeout=30) as client:
        world = World(client).populate()
        add_id_datasets(world)
        yield world


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b


def _shot(page: Any, name: str) -> None:
    target = os.environ.get("TANDEM_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / name), full_page=True)


def _officer(world: World, url: str, tmp_path: Path) -> tuple[str, Path]:
    """A compliance officer with a key made by the CLI and registered as an auditor; (token, key file)."""
    key = tmp_path / "officer.key"
    made = CliRunner().invoke(bank_cli, ["job", "auditor-key", "--out", str(key)], env={})
    assert made.exit_code == 0, made.output
    r = httpx.post(f"{url}/api/v1/users", headers={"Authorization": f"Bearer {BOOT}"}, timeout=30,
                   json={"name": "officer", "role": "auditor", "signing_key": made.output.strip()})
    assert r.status_code == 201, r.text
    return r.json()["token"], key


def _sign_only(url: str, token: str, key: Path, job_id: int) -> tuple[str, str]:
    """Run ``tandem-bank job approve ID --auditor-key KEY --sign-only --yes``; (digest it printed, signature)."""
    env = {"TANDEM_API_TOKEN": token, "TANDEM_COORDINATOR_URL": url}
    out = CliRunner().invoke(bank_cli, ["job", "approve", str(job_id), "--auditor-key", str(key), "--sign-only",
                                        "--yes"], env=env)
    assert out.exit_code == 0, out.output
    digest = re.search(r"digest \(recomputed here from these terms\): ([0-9a-f]{64})", out.output)
    signature = re.search(r"signature \(paste it into the approval page of job \d+\): ([0-9a-f]{128})", out.output)
    assert digest and signature, out.output
    return digest.group(1), signature.group(1)


def _inbox(page: Any) -> list[str]:
    return page.locator("#inbox a").all_inner_texts()


def test_officer_approves_from_the_inbox_with_a_pasted_signature(server, world, browser, tmp_path):
    url = server[0]
    token, key = _officer(world, url, tmp_path)
    job = submit_auditor_job(world)
    context, page = sign_in(browser, url, token, start="/console/approvals")

    assert page.url == f"{url}/console/approvals" and f"job {job['id']}" in _inbox(page)
    _shot(page, "approvals.png")
    page.click(f"#inbox a[href='/console/jobs/{job['id']}']")
    page.wait_for_load_state()
    terms, datasets = page.inner_text("#terms"), page.inner_text("#datasets")
    assert "marketing" in terms and "count" in terms and "50" in terms  # purpose, output mode, k
    assert "subscribers_by_id" in datasets and "id_number" in datasets and "level 4" in datasets
    assert "R10-auditor-level" in page.inner_text("#decision")
    shown = page.inner_text("#digest")
    assert page.inner_text("#sign-command") == f"tandem-bank job approve {job['id']} --auditor-key officer.key " \
                                               "--sign-only"
    _shot(page, "job.png")

    digest, signature = _sign_only(url, token, key, job["id"])
    assert digest == shown == job["digest"]
    still = httpx.get(f"{url}/api/v1/jobs/{job['id']}", headers=world.h("auditor"), timeout=30).json()
    assert still["approvals"] == []  # --sign-only posted nothing
    page.fill("textarea[name=signature]", signature)
    page.click("#approve")
    page.wait_for_load_state()

    assert page.inner_text("#notice") == "Your approval was recorded."
    assert "officer" in page.inner_text("#approvals")
    page.click("nav a[href='/console/approvals']")
    page.wait_for_load_state()
    assert f"job {job['id']}" not in _inbox(page)
    after = httpx.get(f"{url}/api/v1/jobs/{job['id']}", headers=world.h("auditor"), timeout=30).json()
    assert [(a["approver"], a["user"]) for a in after["approvals"]] == [("auditor", "officer")]
    print(f"job {job['id']}: digest {digest[:16]}… shown by page and CLI; approved by officer; inbox no longer "
          "lists it")
    context.close()


def test_officer_rejects_with_a_reason(server, world, browser):
    url = server[0]
    job = submit_auditor_job(world, title="overlap to reject")
    context, page = sign_in(browser, url, world.tokens["auditor"], start=f"/console/jobs/{job['id']}")

    page.fill("input[name=reason]", "purpose too broad for id numbers")
    page.click("#reject")
    page.wait_for_load_state()

    assert "rejected by user:auditor: purpose too broad for id numbers" in page.inner_text("#status")
    assert page.locator("#approve-form").count() == 0 and page.locator("#reject-form").count() == 0
    stored = httpx.get(f"{url}/api/v1/jobs/{job['id']}", headers=world.h("auditor"), timeout=30).json()
    assert stored["status"] == "cancelled"
    events = httpx.get(f"{url}/api/v1/audit/events", params={"limit": 1000}, headers=world.h("auditor"),
                       timeout=30).json()
    assert any(e["action"] == "job.rejected" and e["object"] == f"job:{job['id']}"
               and e["details"]["reason"] == "purpose too broad for id numbers" for e in events)
    context.close()


def test_analyst_never_reaches_the_approval_form(server, world, browser):
    url = server[0]
    job = submit_auditor_job(world, title="overlap the analyst looks at")
    context, page = sign_in(browser, url, world.tokens["bank_analyst"], start=f"/console/jobs/{job['id']}")

    assert page.url.endswith("/console/my-jobs")  # an analyst lands on its own jobs, not the officer's pages
    page.goto(f"{url}/console/jobs/{job['id']}")
    assert "may not call this endpoint" in page.content() and page.locator("#approve-form").count() == 0
    page.goto(f"{url}/console/approvals")
    assert page.locator("#approve-form").count() == 0 and "may not call this endpoint" in page.content()
    context.close()


def test_policy_page_lists_every_rule(server, world, browser):
    url = server[0]
    context, page = sign_in(browser, url, world.tokens["auditor"], start="/console/policy")

    rules = page.inner_text("#rules")
    missing = [rule_id for rule_id in RULE_IDS if rule_id not in rules]
    assert missing == []
    version = httpx.get(f"{url}/api/v1/healthz", timeout=30).json()["policy_version"]
    assert version in page.inner_text("#in-force") and "in force" in page.inner_text("#history")
    _shot(page, "policy.png")
    print(f"policy page: {len(RULE_IDS)} rules listed, version {version} in force")
    context.close()
