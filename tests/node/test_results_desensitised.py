"""``tandem-bank psi-results``: row-level results listed and exported to the token's clearance, exports audited.

A real coordinator over HTTP (``served_coordinator``) and the real ``tandem-bank`` command in a
subprocess; the bank node's job directory holds a recovered-contacts file as a recovery job writes it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from node.jobs.psi.results import RECOVERED_FILE, write_rows
from node.keys import init_keys
from node.ledger import EgressLedger
from node.node_db import NODE_DB
from tests.support.coordinator import API, World, field
from tests.support.served import served_coordinator

ROOT = Path(__file__).resolve().parents[2]
NUMBERS = ["13812345534", "13998765432", "15011112222"]
ROWS = [[f"C00{i}", "id_number", n] for i, n in enumerate(NUMBERS)]


def _policy(tmp_path: Path) -> Path:
    """The shipped policy, with full exports of marketing results granted to operators (not to admins)."""
    text = (ROOT / "coordinator" / "policy.yaml").read_text()
    path = tmp_path / "policy.yaml"
    grant = "    - {role: operator, purpose: marketing}"
    path.write_text(text.replace("    - {role: operator, purpose: recovery}", grant))
    return path


def _job(world: World) -> dict[str, Any]:
    world.register("bank", "lost_contacts", [field("mobile"), field("customer_id", level=3, key_type="customer_id")])
    world.register("telco", "subscribers", [{**field("msisdn", level=4), "desensitisation": "mask"}])
    job = world.submit()
    for approver, who in (("party:bank", "bank_admin"), ("party:telco", "telco_admin"), ("auditor", "auditor")):
        world.approve(job, approver, who)
    for who, party in (("bank_admin", "bank"), ("telco_op", "telco")):
        r = world.c.post(f"{API}/jobs/{job['id']}/result", json={"status": "succeeded", "outputs": {"n": 1}},
                         headers=world.h(who))
        assert r.status_code == 200, (party, r.text)
    return job


@pytest.fixture
def bank(tmp_path: Path):
    state = tmp_path / "bank"
    state.mkdir(mode=0o700)
    (tmp_path / "coord").mkdir(mode=0o700)
    with served_coordinator(tmp_path / "coord", policy_path=_policy(tmp_path)) as (url, client):
        world = World(client).populate()
        world.add_user("bank_op", "operator", "bank")
        job = _job(world)
        init_keys(state, "bank")
        job_dir = state / "jobs" / str(job["id"])
        job_dir.mkdir(parents=True, mode=0o700)
        write_rows(job_dir / RECOVERED_FILE, ["customer_id", "matched_by", "msisdn"], ROWS)

        def run(*args: str, who: str = "bank_admin") -> subprocess.CompletedProcess[str]:
            env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
            env |= {"TANDEM_BANK_STATE_DIR": str(state), "TANDEM_BANK_COORDINATOR_URL": url,
                    "TANDEM_BANK_API_TOKEN": world.tokens[who]}
            command = [str(Path(sys.executable).parent / "tandem-bank"), "psi-results", str(job["id"]), *args]
            return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)

        yield run, world, state


def test_the_listing_masks_numbers_above_the_tokens_clearance(bank) -> None:
    # Prepare
    run, _, _ = bank

    # Execute
    listed = run()

    # Assert
    print(listed.stdout)
    assert listed.returncode == 0, listed.stderr
    assert "as admin of bank (clearance 3)" in listed.stdout
    assert "customer_id=C000  matched_by=id_number  msisdn=138****5534" in listed.stdout  # level 3 shown, 4 masked
    assert not any(n in listed.stdout for n in NUMBERS)


def test_an_export_is_desensitised_and_audited_and_a_full_one_needs_the_grant(bank, tmp_path: Path) -> None:
    # Prepare
    run, world, state = bank

    # Execute
    masked = run("--export", "masked.jsonl")
    refused = run("--export", "full_admin.csv", "--full", "--reason", "call-back list")
    no_reason = run("--export", "full_op.csv", "--full", who="bank_op")
    full = run("--export", "full_op.csv", "--full", "--reason", "call-back list, ticket 1234", who="bank_op")
    events = [e for e in world.events() if e["action"] in ("output.exported", "request.refused")]

    # Assert: the masked export holds no number; the admin (no grant) gets nothing; the operator all, audited
    print(masked.stdout, refused.stderr, full.stdout, sep="\n")
    assert masked.returncode == 0 and "desensitised to clearance 3" in masked.stdout, masked.stderr
    text = (tmp_path / "masked.jsonl").read_text()
    assert '"msisdn": "138****5534"' in text and not any(n in text for n in NUMBERS)
    assert refused.returncode == 1 and "may not export marketing results unmasked" in refused.stderr
    assert not (tmp_path / "full_admin.csv").exists()
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    assert full.returncode == 0, full.stderr
    raw = (tmp_path / "full_op.csv").read_bytes()
    assert all(n in raw.decode() for n in NUMBERS) and oct((tmp_path / "full_op.csv").stat().st_mode)[-3:] == "600"
    summary = [(e["action"], e["actor"], e["details"].get("full"), e["details"].get("reason")) for e in events]
    assert summary == [("output.exported", "user:bank_admin", False, ""),
                       ("request.refused", "user:bank_admin", None, None),
                       ("output.exported", "user:bank_op", True, "call-back list, ticket 1234")]
    assert events[-1]["details"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert events[0]["details"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    ledger = EgressLedger(state / NODE_DB)  # the node's own record: each notice it sent, refused or not
    try:
        notices = [r.body for r in ledger.records() if r.body["kind"] == "output_export"]
    finally:
        ledger.close()
    assert len(notices) == 3 and all(n["ref"].endswith("/exports") for n in notices)
