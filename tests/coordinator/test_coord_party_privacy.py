"""What one party's users must never read of the other party's outputs, through any route.

Found by an attack on the console's first version: the lineage API returned both parties' outputs
unmasked; the telco read the bank's ``job.result`` event, whose unsalted outputs digest and keys let
it guess the bank's overlap count (a count-mode job must not tell the telco); and the bank's export
event carried its matched count to the telco. Each party reads its own outputs, result reports and
exports; auditors read all.
"""

from __future__ import annotations

import hashlib

from tests.support.coordinator import API, World

BANK = {"overlap": 60, "bank_keys_valid": 120, "secret_bank_only": 987654321}  # 9 digits: not by chance in a hex key
TELCO = {"telco_keys_valid": 150, "secret_telco_only": 777}


def _finished(world: World) -> dict:
    job = world.approved_job()
    for who, out in (("bank_admin", BANK), ("telco_op", TELCO)):
        r = world.c.post(f"{API}/jobs/{job['id']}/result", json={"status": "succeeded", "outputs": out},
                         headers=world.h(who))
        assert r.status_code == 200, r.text
    return job


def test_lineage_shows_a_party_its_own_outputs_and_reports_only(world):
    job = _finished(world)

    job_view = world.c.get(f"{API}/jobs/{job['id']}/lineage", headers=world.h("telco_admin")).json()
    dataset_view = world.c.get(f"{API}/datasets/{world.datasets['telco']}/lineage",
                               headers=world.h("telco_admin")).json()
    officer = world.c.get(f"{API}/jobs/{job['id']}/lineage", headers=world.h("auditor")).json()

    assert job_view["job"]["outputs"] == {"telco": TELCO}
    assert [t["job"]["outputs"] for t in dataset_view["jobs"]] == [{"telco": TELCO}]
    assert "secret_bank_only" not in str(job_view) and "987654321" not in str(dataset_view)
    assert [r["details"]["party"] for r in job_view["results"]] == ["telco"]
    assert set(officer["job"]["outputs"]) == {"bank", "telco"}
    assert sorted(r["details"]["party"] for r in officer["results"]) == ["bank", "telco"]


def test_the_other_partys_result_report_is_not_in_the_audit_events_it_reads(world):
    job = _finished(world)

    telco = [e for e in world.events("telco_admin") if e["action"] == "job.result"]
    officer = [e for e in world.events("auditor") if e["action"] == "job.result"]

    assert [e["details"]["party"] for e in telco] == ["telco"]  # the bank's outputs digest stays hidden
    assert sorted(e["details"]["party"] for e in officer) == ["bank", "telco"]
    assert any(e["action"] == "job.status" and e["object"] == f"job:{job['id']}"
               for e in world.events("telco_admin"))  # the shared job's other events stay visible


def test_an_export_event_is_read_by_the_exporting_party_and_auditors_only(world):
    job = _finished(world)
    body = {"file": "/srv/bank/jobs/1/matched_customer_ids.csv", "rows": 60, "columns": ["customer_id"],
            "full": False, "reason": "", "sha256": hashlib.sha256(b"x").hexdigest()}
    assert world.c.post(f"{API}/jobs/{job['id']}/exports", json=body, headers=world.h("bank_admin")).status_code == 200

    def exports(who: str) -> list[dict]:
        return [e for e in world.events(who) if e["action"] == "output.exported"]

    lineage = world.c.get(f"{API}/jobs/{job['id']}/lineage", headers=world.h("telco_admin")).json()
    assert exports("telco_admin") == [] and lineage["accesses"] == []
    assert [e["details"]["row_count"] for e in exports("bank_admin")] == [60]
    assert [e["details"]["row_count"] for e in exports("auditor")] == [60]
