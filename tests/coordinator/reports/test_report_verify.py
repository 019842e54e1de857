"""A report verifies later, offline, against an audit export and the coordinator key; tampering is caught.

Also the command line: ``tandem-coordinator report --job N --out FILE`` and ``report verify``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from coordinator import report_proof
from coordinator.app import create_app
from coordinator.audit.chain import export_lines as export_lines_of
from coordinator.audit.chain import sign_head
from coordinator.cli import app as cli
from coordinator.settings import Settings, get_settings
from protocols.crypto.hashchain import ChainRecord
from protocols.crypto.signing import SigningKey
from protocols.wire.canonical import canonical_json, sha256_hex
from tests.coordinator.reports.support import export_lines, run_job, sign_in_auditor
from tests.support.coordinator import BOOT, TestClient, World, app_settings


def _report_and_export(world: World, suffix: str = "pdf") -> tuple[bytes, list[bytes]]:
    job = run_job(world)
    sign_in_auditor(world)
    r = world.c.get(f"/console/reports/jobs/{job['id']}.{suffix}")
    assert r.status_code == 200, r.text
    return r.content, export_lines(world)


@pytest.mark.parametrize("suffix", ["pdf", "html"])
def test_the_report_and_its_head_verify_against_a_later_audit_export(world, suffix):
    data, lines = _report_and_export(world, suffix)

    key = world.c.app.state.context.audit_key.public_hex
    check = report_proof.verify_report(report_proof.read_proof(data), lines, key)

    assert check.ok, check.lines
    assert len(check.lines) == 7
    print(f"{suffix}: " + " | ".join(line.split(":")[0] + ":" + line.split(":")[1][:40] for line in check.lines))


def _edit_content(proof: dict[str, Any]) -> None:
    proof["report"]["jobs"][0]["egress"][0]["bytes_sent"] = 1


def _redigest(proof: dict[str, Any]) -> None:
    proof["digest"] = sha256_hex(canonical_json(proof["report"]))


def _edit_and_redigest(proof: dict[str, Any]) -> None:
    _edit_content(proof)
    _redigest(proof)


def _other_head(proof: dict[str, Any]) -> None:
    proof["report"]["head"]["seq"] -= 1
    _redigest(proof)


REPORT_TAMPERS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "content edited": (_edit_content, "does not hash to its digest"),
    "content edited and digested again": (_edit_and_redigest, "signature does not verify"),
    "head moved": (_other_head, "audit head is not signed"),
}


@pytest.mark.parametrize("name", list(REPORT_TAMPERS))
def test_an_edited_report_fails(world, name):
    data, lines = _report_and_export(world)
    proof = report_proof.read_proof(data)
    tamper, expected = REPORT_TAMPERS[name]
    tamper(proof)

    check = report_proof.verify_report(proof, lines, world.c.app.state.context.audit_key.public_hex)

    assert not check.ok
    assert any(expected in line for line in check.lines if line.startswith("FAILED")), check.lines


def test_a_byte_changed_in_the_pdf_file_fails(world):
    data, lines = _report_and_export(world)
    assert data.count(b'"bytes_sent":12345') == 1

    tampered = data.replace(b'"bytes_sent":12345', b'"bytes_sent":12346')
    key = world.c.app.state.context.audit_key.public_hex
    check = report_proof.verify_report(report_proof.read_proof(tampered), lines, key)

    assert not check.ok
    assert "FAILED: the report's content does not hash to its digest (the report was edited)" in check.lines


def test_a_tampered_export_an_older_export_or_another_key_fails(world):
    job = run_job(world)
    sign_in_auditor(world)
    older = export_lines(world)
    proof = report_proof.read_proof(world.c.get(f"/console/reports/jobs/{job['id']}.pdf").content)
    lines = export_lines(world)
    key = world.c.app.state.context.audit_key.public_hex
    at = next(i for i, line in enumerate(lines) if b'"approval.added"' in line)
    tampered = [*lines[:at], lines[at].replace(b"bank_admin", b"bank_admix"), *lines[at + 1:]]

    records = [ChainRecord.from_dict(json.loads(line)) for line in lines if b"signed_head" not in line]
    head = proof["report"]["head"]["seq"]
    cut = [r for r in records if r.seq < head]  # a log re-signed without the report's head
    resigned = [line.encode() for line in export_lines_of(cut, sign_head(world.c.app.state.context.audit_key, cut[-1]))]

    results = {"tampered export": report_proof.verify_report(proof, tampered, key),
               "export without the report's head": report_proof.verify_report(proof, resigned, key),
               "export taken before the report": report_proof.verify_report(proof, older, key),
               "another coordinator's key": report_proof.verify_report(proof, lines, SigningKey.generate().public_hex)}

    assert report_proof.verify_report(proof, lines, key).ok
    failed = {name: [line for line in check.lines if line.startswith("FAILED")] for name, check in results.items()}
    assert not any(check.ok for check in results.values())
    assert any("audit export does not verify" in line for line in failed["tampered export"])
    assert any("does not hold the report's head" in line for line in failed["export without the report's head"])
    assert failed["export taken before the report"] == [  # its last event is the report's head, which it holds
        "FAILED: no report.produced event with this digest in the export (an export taken after the report?)"]
    assert any("signature does not verify" in line for line in failed["another coordinator's key"])
    print({name: len(lines) for name, lines in failed.items()})


def test_read_proof_refuses_a_file_without_one():
    with pytest.raises(ValueError, match="no Tandem report proof"):
        report_proof.read_proof(b"%PDF-1.4 nothing here")
    with pytest.raises(ValueError, match="not valid JSON"):
        report_proof.read_proof(b'{"tandem_report": {"report": ')


# ---------------------------------------------------------------- the command line


@pytest.fixture
def state(monkeypatch, tmp_path) -> tuple[Path, str, int]:
    """A coordinator state directory with one job run through the API; (directory, audit public key, job id)."""
    monkeypatch.setenv("TANDEM_COORD_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("TANDEM_COORD_DATABASE_URL", f"sqlite:///{tmp_path}/coord.db")
    monkeypatch.setenv("TANDEM_COORD_SIGNING_KEY_PATH", str(tmp_path / "audit.key"))
    monkeypatch.delenv("TANDEM_COORD_BOOTSTRAP_TOKEN", raising=False)
    get_settings.cache_clear()
    app = create_app(Settings(bootstrap_token=BOOT))
    with TestClient(app) as client:
        job = run_job(World(client).populate())
    app.state.context.store.close()
    yield tmp_path, app.state.context.audit_key.public_hex, job["id"]
    get_settings.cache_clear()


def test_the_cli_writes_a_report_that_verifies_and_refuses_a_tampered_one(state):
    tmp, key, job_id = state
    runner = CliRunner()
    pdf, html, audit = tmp / "job.pdf", tmp / "period.html", tmp / "audit.jsonl"

    made = runner.invoke(cli, ["report", "--job", str(job_id), "--out", str(pdf)])
    period = runner.invoke(cli, ["report", "--from", "2000-01-01", "--to", "2000-12-31", "--out", str(html)])
    assert runner.invoke(cli, ["audit", "export", "--out", str(audit)]).exit_code == 0
    ok = runner.invoke(cli, ["report", "verify", str(pdf), "--audit", str(audit), "--key", key])
    pdf.write_bytes(pdf.read_bytes().replace(b'"messages_sent":3', b'"messages_sent":0'))
    bad = runner.invoke(cli, ["report", "verify", str(pdf), "--audit", str(audit), "--key", key])

    assert made.exit_code == 0 and "verify with: tandem-coordinator audit export" in made.output, made.output
    assert period.exit_code == 0 and "0 jobs" in period.output
    assert pdf.read_bytes().startswith(b"%PDF-") and "<!doctype html>" in html.read_text()
    assert ok.exit_code == 0 and ok.output.count("OK:") == 7, ok.output
    assert bad.exit_code == 1 and "FAILED: the report's content does not hash" in bad.output
    produced = [json.loads(line) for line in audit.read_text().splitlines()
                if '"report.produced"' in line]
    assert [p["body"]["actor"] for p in produced] == ["cli", "cli"]
    print(ok.output.strip().splitlines()[-1])


@pytest.mark.parametrize(("args", "message"), [
    (["report", "--job", "1"], "--out FILE.pdf"),
    (["report", "--job", "1", "--out", "x.txt"], "--out FILE.pdf"),
    (["report", "--from", "2026-01-01", "--out", "x.pdf"], "--to DATE"),
    (["report", "--job", "999", "--out", "x.pdf"], "job 999 does not exist"),
    (["report", "--from", "2026-02-30", "--to", "2026-03-01", "--out", "x.pdf"], "from must be a date"),
])
def test_cli_mistakes_name_the_option_and_exit_2(state, args, message):
    result = CliRunner().invoke(cli, args)

    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize(("key", "message"), [(None, "no Tandem report proof"), ("abc", "--key must be 64 hex")])
def test_cli_verify_of_a_file_without_a_report_or_with_a_bad_key_exits_2(state, tmp_path, key, message):
    (tmp_path / "plain.pdf").write_bytes(b"%PDF-1.4\n")
    (tmp_path / "a.jsonl").write_text("")

    result = CliRunner().invoke(cli, ["report", "verify", str(tmp_path / "plain.pdf"), "--audit",
                                      str(tmp_path / "a.jsonl"), "--key", key or state[1]])

    assert result.exit_code == 2 and message in result.output


def test_the_report_pages_send_a_browser_without_a_session_to_sign_in(tmp_path):
    with TestClient(create_app(app_settings(tmp_path))) as client:
        assert client.get("/console/reports/period.html", follow_redirects=False).status_code == 401
