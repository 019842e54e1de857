"""``job approve --sign-only`` against a real coordinator process, and its signature pasted through the console form.

No browser: the form is posted with httpx after signing in through the login form, so this runs where
Chromium is missing (the browser test does the same in Chromium).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bank_node.settings import BankSettings
from node.cli import build_cli
from protocols.crypto.signing import verify_approval
from tests.coordinator.console.conftest import add_id_datasets, submit_auditor_job
from tests.support.browser import coordinator_process
from tests.support.coordinator import BOOT, World

bank_cli = build_cli(BankSettings, "bank")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, World]]:
    with coordinator_process(tmp_path_factory.mktemp("console-cli")) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as client:
        world = World(client).populate()
        add_id_datasets(world)
        yield url, world


def test_sign_only_prints_the_digest_and_a_signature_and_posts_nothing(served, tmp_path: Path):
    url, world = served
    key = tmp_path / "officer.key"
    public = CliRunner().invoke(bank_cli, ["job", "auditor-key", "--out", str(key)], env={}).output.strip()
    token = world.c.post("/api/v1/users", headers={"Authorization": f"Bearer {BOOT}"},
                         json={"name": "officer", "role": "auditor", "signing_key": public}).json()["token"]
    job = submit_auditor_job(world)

    out = CliRunner().invoke(bank_cli, ["job", "approve", str(job["id"]), "--auditor-key", str(key), "--sign-only",
                                        "--yes"], env={"TANDEM_API_TOKEN": token, "TANDEM_COORDINATOR_URL": url})

    assert out.exit_code == 0, out.output
    digest = re.search(r"digest \(recomputed here from these terms\): ([0-9a-f]{64})", out.output).group(1)
    signature = re.search(r"signature \(paste it into the approval page of job \d+\): ([0-9a-f]{128})",
                          out.output).group(1)
    assert digest == job["digest"]
    verify_approval(public, digest, signature)  # raises if it does not verify
    assert world.c.get(f"/api/v1/jobs/{job['id']}", headers=world.h("auditor")).json()["approvals"] == []

    with httpx.Client(base_url=url, timeout=30, follow_redirects=True) as browser:
        login = browser.post("/login", data={"token": token, "next": f"/console/jobs/{job['id']}"})
        assert login.status_code == 200 and 'id="approve-form"' in login.text  # back on the job's page
        posted = browser.post(f"/console/jobs/{job['id']}/approve", data={"signature": signature})
    assert posted.status_code == 200 and "Your approval was recorded." in posted.text
    approvals = world.c.get(f"/api/v1/jobs/{job['id']}", headers=world.h("auditor")).json()["approvals"]
    assert [(a["approver"], a["user"], a["signer_key"]) for a in approvals] == [("auditor", "officer", public)]
    print(f"sign-only: digest {digest[:16]}… = the coordinator's; the pasted signature approved job {job['id']}")
