"""Compliance reports over the real API: a job's content, a period's, the PDF, and who may read them."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta

import pytest

from coordinator import report_proof, reports
from coordinator.accounts import Principal, hash_token
from coordinator.errors import NotFound
from protocols.wire.control import Role
from tests.coordinator.reports.support import BANK_RESULT, TELCO_RESULT, run_job, sign_in_auditor
from tests.support.coordinator import API, World


def _events(world: World, action: str) -> list[dict]:
    return [e for e in world.events() if e["action"] == action]


def test_a_job_report_says_what_ran_under_which_policy_who_approved_what_left_and_what_was_released(world):
    job = run_job(world)
    sign_in_auditor(world)

    r = world.c.get(f"/console/reports/jobs/{job['id']}.html")

    assert r.status_code == 200, r.text
    proof = report_proof.read_proof(r.content)
    report = reports.Report.model_validate(proof["report"])
    [section] = report.jobs
    ctx = world.c.app.state.context
    assert (section.kind, section.purpose, section.status, section.terms_digest) == (
        "audience_overlap", "marketing", "succeeded", job["digest"])
    assert (section.policy_version, section.policy_digest) == (ctx.policy.version, ctx.policy.digest)
    assert {(a.approver, a.user, a.signer_key) for a in section.approvals} == {
        ("party:bank", "bank_admin", world.keys["bank"].public_hex),
        ("party:telco", "telco_admin", world.keys["telco"].public_hex)}
    assert [(e.party, e.messages_sent, e.bytes_sent, e.ledger_head) for e in section.egress] == [
        ("bank", 3, 12345, "a" * 64), ("telco", 2, 999, "b" * 64)]
    assert section.epsilon is not None and section.epsilon.epsilon == 0.5 and not section.epsilon.refunded_at
    bank, telco = section.outputs
    assert (bank.figures, bank.withheld) == ({"bank_set_size": 5000, "count": 812}, ["note"])
    assert (telco.figures, telco.sizes) == ({"bank_set_size": 5000}, {"matched_ids": 3})
    assert "row text" not in r.text  # text outputs are named, never shown
    assert [e.action for e in section.evidence].count("approval.added") == 2
    assert [e.action for e in section.evidence].count("job.result") == 2
    assert [d.fields_used for d in section.datasets] == [["mobile (key)"], ["msisdn (key)"]]
    head = world.c.get(f"{API}/audit/head", headers=world.h("auditor")).json()
    assert report.head.seq < head["seq"]  # produced against an earlier head, then audited
    [produced] = _events(world, "report.produced")
    assert produced["details"]["digest"] == proof["digest"] and produced["details"]["head_seq"] == report.head.seq
    assert "12,345" in r.text and report.head.hash in r.text and world.keys["bank"].public_hex in r.text
    print(f"job {job['id']} report: head seq {report.head.seq}, {report.totals.messages_sent} messages, "
          f"{report.totals.bytes_sent} bytes, eps {report.totals.epsilon_spent}, digest {proof['digest'][:16]}")


def test_a_period_report_covers_every_job_active_in_the_period(world):
    done = run_job(world)
    second = run_job(world, epsilon=None)
    pending = world.submit()
    sign_in_auditor(world)
    today = world.c.app.state.context.clock().date()

    r = world.c.get("/console/reports/period.html",  # a day either side: the test may straddle midnight
                    params={"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))})
    before = world.c.get("/console/reports/period.html",
                         params={"from": str(today - timedelta(days=9)), "to": str(today - timedelta(days=2))})

    report = reports.Report.model_validate(report_proof.read_proof(r.content)["report"])
    assert [j.id for j in report.jobs] == [done["id"], second["id"], pending["id"]]
    assert report.totals.by_status == {"pending_approval": 1, "succeeded": 2}
    assert report.totals.bytes_sent == 2 * (BANK_RESULT["bytes_sent"] + TELCO_RESULT["bytes_sent"])
    assert report.totals.epsilon_spent == 0.5  # the second job released an exact, suppressed count
    assert report.jobs[1].epsilon is None and report.jobs[2].approvals == []
    assert f'href="/console/reports/jobs/{done["id"]}.pdf"' in r.text
    assert reports.Report.model_validate(report_proof.read_proof(before.content)["report"]).jobs == []
    print(f"period {today}: {report.totals.jobs} jobs {report.totals.by_status}, {report.totals.bytes_sent} bytes")


@pytest.mark.parametrize(("start", "end", "field"), [("2026-13-01", "2026-12-01", "from"),
                                                     ("2026-12-05", "2026-12-01", "to"),
                                                     ("2024-01-01", "2026-01-01", "to")])
def test_a_bad_period_is_a_clear_refusal_and_audited(world, start, end, field):
    sign_in_auditor(world)

    r = world.c.get("/console/reports/period.pdf", params={"from": start, "to": end})

    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html")
    assert field in r.text and "Traceback" not in r.text
    [refused] = _events(world, "report.refused")
    assert refused["actor"] == "user:auditor" and refused["object"] == "report:period"


def test_the_pdf_is_a_pdf_with_the_report_in_its_text_and_its_proof_attached(world):
    job = run_job(world)
    sign_in_auditor(world)

    r = world.c.get(f"/console/reports/jobs/{job['id']}.pdf")

    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-") and r.content.rstrip().endswith(b"%%EOF")
    assert "attachment" in r.headers["content-disposition"]
    proof = report_proof.read_proof(r.content)
    report = reports.Report.model_validate(proof["report"])
    assert report.jobs[0].id == job["id"] and report.jobs[0].egress[0].bytes_sent == 12345
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is missing: the embedded proof was checked, the text was not")
    text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=r.content, capture_output=True, check=True).stdout
    words = text.decode("utf-8")
    for expected in (f"Job {job['id']}", "12,345", "party:telco", "bank_admin", report.head.hash[:40], proof["digest"],
                     "ε spent", "count = 812", "note: withheld"):
        assert expected in words, expected
    print(f"PDF {len(r.content)} bytes; pdftotext finds job {job['id']}, 12,345 bytes, head {report.head.hash[:12]}")


def test_reports_are_served_only_to_auditors_and_a_refusal_is_audited(world):
    job = run_job(world, results=False)
    sessions = world.c.app.state.web_sessions
    clock = world.c.app.state.context.clock
    paths = [f"/console/reports/jobs/{job['id']}.html", f"/console/reports/jobs/{job['id']}.pdf",
             "/console/reports/period.html", "/console/reports/period.pdf"]

    anonymous = [world.c.get(p, follow_redirects=False).status_code for p in paths]
    refused = []
    for who in ("bank_admin", "bank_analyst", "telco_op"):  # sessions the login form itself would not open
        cookie = sessions.open(hash_token(world.tokens[who]), who, clock())
        for p in paths:
            r = world.c.get(p, headers={"Cookie": f"tandem_session={cookie}"}, follow_redirects=False)
            refused.append((who, r.status_code, "auditor" in r.text and "%PDF" not in r.text))

    assert anonymous == [401] * 4
    assert refused == [(who, 403, True) for who in ("bank_admin", "bank_analyst", "telco_op") for _ in paths]
    events = _events(world, "report.refused")
    assert len(events) == 12 and {e["actor"] for e in events} == {"user:bank_admin", "user:bank_analyst",
                                                                  "user:telco_op"}
    assert _events(world, "report.produced") == []


def test_a_report_of_a_job_the_caller_may_not_see_is_refused_and_audited(world):
    job = run_job(world, results=False)
    sign_in_auditor(world)
    ctx = world.c.app.state.context

    missing = world.c.get("/console/reports/jobs/999999.html")
    with pytest.raises(NotFound):  # a party user of another party: the job is not there for them
        reports.job_report(ctx, Principal("other_admin", Role.ADMIN, "otherbank"), job["id"])

    assert missing.status_code == 404 and "job 999999 does not exist" in missing.text
    assert [(e["actor"], e["object"]) for e in _events(world, "report.refused")] == [
        ("user:auditor", "job:999999"), ("user:other_admin", f"job:{job['id']}")]
