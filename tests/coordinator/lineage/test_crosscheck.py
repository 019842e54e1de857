"""The ledger cross-check over real ledgers (``EgressLedger``) and a real coordinator's audit export.

Prepare: a world over a TestClient, two nodes whose real ``CoordinatorClient`` talks to it (so every
control message lands in their ledgers too), an approved job run between them, the exports.
Execute: ``cross_check``. Assert: the clean run has no finding; each tampering is caught by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.crosscheck import CrossCheckRefused, LedgerInput, cross_check, parse_ledger_label
from tests.coordinator.lineage.federation import audit_export, lines, nodes, run_overlap
from tests.support.coordinator import World


@pytest.fixture
def run(world: World, tmp_path: Path) -> dict[str, Path]:
    """Both ledgers and the audit export after one clean overlap job (plus a catalog message each)."""
    pair = nodes(world, tmp_path, transport=world.c._transport)
    world.job = run_overlap(world, pair)
    return {"bank": pair["bank"].export(tmp_path / "bank.jsonl"),
            "telco": pair["telco"].export(tmp_path / "telco.jsonl"),
            "audit": audit_export(world, tmp_path / "audit.jsonl"), "_pair": pair,  # type: ignore[dict-item]
            "job_id": world.job["id"]}  # type: ignore[dict-item]


def _check(run: dict[str, Path], bank: Path | None = None, telco: Path | None = None, **labels: str | None):
    given = [LedgerInput(str(bank or run["bank"]), lines(bank or run["bank"]), labels.get("bank_label")),
             LedgerInput(str(telco or run["telco"]), lines(telco or run["telco"]), labels.get("telco_label"))]
    return cross_check(given, lines(run["audit"]))


def _rewrite(src: Path, dst: Path, change) -> Path:
    records = [json.loads(line) for line in lines(src)]
    change(records)
    dst.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    return dst


def test_a_clean_run_accounts_for_every_message(run):
    result = _check(run)

    print("clean:", [(s.party, s.records, s.data_messages, s.jobs) for s in result.ledgers], result.findings)
    assert result.ok, result.findings
    assert {s.party for s in result.ledgers} == {"bank", "telco"}
    assert all(s.chain_ok and s.data_messages == 2 for s in result.ledgers)


def test_the_ledgers_party_comes_from_the_heads_it_reported_not_from_the_file_order(run):
    result = cross_check([LedgerInput("a", lines(run["telco"])), LedgerInput("b", lines(run["bank"]))],
                         lines(run["audit"]))

    assert result.ok and [s.party for s in result.ledgers] == ["telco", "bank"]


def test_an_edited_record_is_caught(run, tmp_path):
    def shrink(records):
        sent = next(r for r in records if r["body"]["peer"] == "telco")
        sent["body"]["bytes"] = 1  # the node now claims it sent 1 byte

    tampered = _rewrite(run["bank"], tmp_path / "bank-tampered.jsonl", shrink)
    result = _check(run, bank=tampered)

    codes = {(f.code, f.party) for f in result.findings}
    print("tampered:", [f.message for f in result.findings])
    assert ("chain_broken", "bank") in codes and ("totals_mismatch", "bank") in codes
    assert not next(s for s in result.ledgers if s.party == "bank").chain_ok


def test_a_message_for_a_job_the_coordinator_never_heard_of_is_flagged(run, tmp_path):
    pair = run["_pair"]
    pair["bank"].send("telco", 999, b"a message for a job nobody approved")
    result = _check(run, bank=pair["bank"].export(tmp_path / "bank-extra.jsonl"))

    flagged = [(f.code, f.job_id) for f in result.findings]
    print("unknown:", [f.message for f in result.findings])
    assert flagged == [("unknown_job", 999)]


def test_a_message_outside_any_job_is_flagged_one_after_the_report_is_counted(run, tmp_path):
    pair = run["_pair"]
    pair["telco"].send("bank", None, b"no job at all")
    pair["telco"].send("bank", run["job_id"], b"sent after the telco reported its result")
    result = _check(run, telco=pair["telco"].export(tmp_path / "telco-extra.jsonl"))

    assert [f.code for f in result.findings] == ["no_job"]
    telco = next(s for s in result.ledgers if s.party == "telco")
    assert telco.after_report == (telco.records - 1,)  # counted outside the totals, not flagged


def test_a_message_for_a_job_the_node_never_reported_is_flagged(run, world, tmp_path):
    job = world.approved_job()
    run["_pair"]["telco"].send("bank", job["id"], b"sent, never reported")
    later = {**run, "audit": audit_export(world, tmp_path / "audit-2.jsonl")}

    result = _check(later, telco=run["_pair"]["telco"].export(tmp_path / "telco-2.jsonl"))

    assert [(f.code, f.party, f.job_id) for f in result.findings] == [("unreported", "telco", job["id"]),
                                                                       ("peer_unaware", "telco", job["id"])]


def test_a_ledger_cut_short_loses_the_reported_head(run, tmp_path):
    cut = tmp_path / "bank-cut.jsonl"
    cut.write_text("".join(line + "\n" for line in lines(run["bank"])[:-3]))

    result = _check(run, bank=cut, bank_label="bank")

    assert "head_missing" in {f.code for f in result.findings}


def test_a_ledger_from_the_wrong_node_is_refused(run):
    with pytest.raises(CrossCheckRefused) as wrong:
        _check(run, bank=run["telco"], telco=run["telco"], bank_label="bank")
    print("wrong node:", wrong.value.message, "|", wrong.value.fix)
    assert "given as bank's ledger, but it is telco's" in wrong.value.message
    assert wrong.value.field.startswith("ledger ") and "tandem-bank ledger export" in wrong.value.fix

    with pytest.raises(CrossCheckRefused, match="two ledgers of telco"):
        _check(run, bank=run["telco"])


def test_inputs_that_are_not_exports_are_refused(run, tmp_path):
    with pytest.raises(CrossCheckRefused, match="not an egress ledger record"):
        cross_check([LedgerInput("audit.jsonl", lines(run["audit"]))], lines(run["audit"]))
    edited = _rewrite(run["audit"], tmp_path / "audit-edited.jsonl",
                      lambda rs: rs[3].get("body", {}).update(actor="user:someone-else"))
    with pytest.raises(CrossCheckRefused, match="the audit export does not verify"):
        _check({**run, "audit": edited})


def test_ledger_labels():
    assert parse_ledger_label("bank=/x/bank.jsonl") == ("bank", "/x/bank.jsonl")
    assert parse_ledger_label("/x/a=b.jsonl") == (None, "/x/a=b.jsonl")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", "audit", "cross-check", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_command_passes_a_clean_run_and_fails_a_tampered_one(run, tmp_path, client):
    key = client.get("/api/v1/audit/public-key").json()["public_key"]
    clean = _cli("--audit", str(run["audit"]), "--ledger", f"bank={run['bank']}", "--ledger", str(run["telco"]),
                 "--key", key)
    print(clean.stdout)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.splitlines()[-1] == "cross-check ok: every message is accounted for"
    assert "signature checked" in clean.stdout

    def grow(records):
        next(r for r in records if r["body"]["peer"] == "bank")["body"]["bytes"] += 1

    tampered = _rewrite(run["telco"], tmp_path / "telco-tampered.jsonl", grow)
    bad = _cli("--audit", str(run["audit"]), "--ledger", str(run["bank"]), "--ledger", str(tampered))
    print(bad.stdout)
    assert bad.returncode == 1 and "FLAGGED chain_broken [telco]" in bad.stdout
    assert bad.stdout.splitlines()[-1].startswith("cross-check FAILED: 1 chain_broken, 1 totals_mismatch")


def test_the_command_refuses_the_wrong_node_in_one_line(run):
    wrong = _cli("--audit", str(run["audit"]), "--ledger", f"bank={run['telco']}")
    print(wrong.stderr)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert wrong.stderr.startswith("refused: ledger ") and "given as bank's ledger, but it is telco's" in wrong.stderr
    missing = _cli("--audit", str(run["audit"]) + ".missing", "--ledger", str(run["bank"]))
    assert missing.returncode == 2 and "--audit" in missing.stderr and "Traceback" not in missing.stderr


def test_a_job_the_peer_knows_nothing_of_is_flagged(run, world, tmp_path):
    pair = run["_pair"]
    job = world.approved_job()
    pair["bank"].send("telco", job["id"], b"the telco never saw or reported this job")
    pair["bank"].report(job["id"], {"overlap": 1})

    later = {**run, "audit": audit_export(world, tmp_path / "audit-2.jsonl")}

    result = _check(later, bank=pair["bank"].export(tmp_path / "bank-2.jsonl"))

    assert [(f.code, f.job_id) for f in result.findings] == [("peer_unaware", job["id"])]
