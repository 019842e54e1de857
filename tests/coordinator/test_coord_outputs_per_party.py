"""Per-party outputs and per-role desensitisation on the coordinator's job read paths, and audited exports.

The outputs in the first test are what the real nodes report: both roles of a count-mode overlap run
in one process (``run_local_job``, the nodes' own drivers), then posted as the parties' results.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h3
import pandas as pd

from coordinator.app import create_app
from node.jobs.psi._rows import KeyColumn, party_rows
from node.jobs.psi.local import run_local_job
from protocols.wire.control import JobParams, KeyType
from tests.support.coordinator import API, TestClient, World, app_settings, field

README = Path(__file__).resolve().parents[2] / "README.md"


def _numbers(data: Any) -> list[float]:
    if isinstance(data, dict):
        return [n for v in data.values() for n in _numbers(v)]
    if isinstance(data, list):
        return [n for v in data for n in _numbers(v)]
    return [data] if isinstance(data, int | float) and not isinstance(data, bool) else []


def _keys(data: Any) -> set[str]:
    if isinstance(data, dict):
        return set(data) | {k for v in data.values() for k in _keys(v)}
    if isinstance(data, list):
        return {k for v in data for k in _keys(v)}
    return set()


def _overlap_outputs(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bank's and the telco's reports of a real count-mode overlap: 120 customers, 150 subscribers, 60 shared."""
    numbers = [f"138{i:08d}" for i in range(210)]
    bank = party_rows(pd.DataFrame({"mobile": numbers[:120], "customer_id": [f"C{i}" for i in range(120)]}),
                      [KeyColumn("mobile", KeyType.MOBILE)], id_field="customer_id")
    telco = party_rows(pd.DataFrame({"msisdn": numbers[60:]}), [KeyColumn("msisdn", KeyType.MOBILE)])
    result = run_local_job(bank, telco, "count", JobParams(min_cell=10), state_dir=tmp_path)
    return result.bank, result.telco


def _finish(world: World, job: dict[str, Any], bank: dict[str, Any], telco: dict[str, Any]) -> dict[str, Any]:
    """Both parties report success; the coordinator's answer to each node."""
    answers = {}
    for who, outputs in (("bank_admin", bank), ("telco_op", telco)):
        r = world.c.post(f"{API}/jobs/{job['id']}/result", json={"status": "succeeded", "outputs": outputs},
                         headers=world.h(who))
        assert r.status_code == 200, r.text
        answers[who] = r.json()
    return answers


def _views(world: World, job_id: int) -> dict[str, dict[str, Any]]:
    views = {}
    for who in ("bank_admin", "bank_analyst", "telco_admin", "telco_op", "auditor"):
        one = world.c.get(f"{API}/jobs/{job_id}", headers=world.h(who)).json()["outputs"]
        listed = [j for j in world.c.get(f"{API}/jobs", headers=world.h(who)).json() if j["id"] == job_id]
        assert listed[0]["outputs"] == one, who  # GET /jobs shows what GET /jobs/{id} shows
        views[who] = one
    return views


def test_each_party_sees_only_its_own_outputs_as_the_readme_table_says(world: World, tmp_path: Path) -> None:
    # Prepare: the README's row for a count-mode overlap, and a job both nodes finished with real outputs
    row = next(line for line in README.read_text().splitlines() if line.startswith("| audience overlap, count |"))
    _, bank_learns, telco_learns, coordinator_learns = (c.strip() for c in row.strip("|").split("|"))
    assert telco_learns == "the bank's set size" and "count" in bank_learns
    bank, telco = _overlap_outputs(tmp_path)
    job = world.approved_job()
    answers = _finish(world, job, bank, telco)

    # Execute
    views = _views(world, job["id"])
    telco_nodes = world.c.get(f"{API}/nodes/jobs", params={"status": "succeeded"}, headers=world.h("telco_op")).json()

    # Assert: the telco learns the bank's set size and nothing else of the bank's; the bank its own count
    print(f"overlap={bank['overlap']} bank set size={bank['bank_keys_valid']}; telco sees {views['telco_admin']}")
    assert bank["overlap"] == 60 and bank["bank_keys_valid"] == 120
    for who in ("telco_admin", "telco_op"):
        seen = views[who]
        assert set(seen) == {"telco"}, who
        assert "overlap" not in _keys(seen) and not (_keys(seen) & (set(bank) - set(telco))), who
        bank_only = {v for k, v in bank.items() if isinstance(v, int) and k not in telco and k.startswith("bank_")}
        assert set(_numbers(seen)) & bank_only == {120}, who  # the bank's set size (bank_queries), only
        assert seen["telco"]["bank_queries"] == bank["bank_keys_valid"]
        assert bank["overlap"] not in _numbers(seen), who
    assert [j["outputs"] for j in telco_nodes if j["id"] == job["id"]] == [views["telco_op"]]
    assert answers["telco_op"]["outputs"] == views["telco_op"]  # the answer to the telco's own result report
    assert "the telco's set size" in bank_learns and "count" in coordinator_learns
    for who in ("bank_admin", "bank_analyst"):
        assert set(views[who]) == {"bank"} and views[who]["bank"]["overlap"] == 60, who
        assert views[who]["bank"]["telco_set_size"] == 150 and "telco_rows" not in _keys(views[who]), who
    assert views["auditor"] == {"bank": bank, "telco": telco}  # compliance reads every party's outputs


def _sensitive_world(world: World) -> dict[str, Any]:
    """Datasets whose fields carry levels 2-4 and every rule; a job over them approved by all three."""
    world.register("bank", "lost_contacts", [
        field("mobile"), field("customer_id", level=3, key_type="customer_id"),
        {**field("id_number", level=4, key_type="id_number"), "desensitisation": "mask"},
        {**field("consent", "sensitive", 2, None), "desensitisation": "drop"},
    ])
    world.register("telco", "subscribers_geo", [
        {**field("msisdn", level=4), "desensitisation": "mask"},
        {**field("home_cell", "sensitive", 4, None), "desensitisation": "generalise"},
        {**field("age", "feature", 4, None), "type": "integer", "desensitisation": "generalise"},
        {**field("arpu", "feature", 4, None), "type": "float", "desensitisation": "generalise"},
    ])
    job = world.submit()
    for approver, who in (("party:bank", "bank_admin"), ("party:telco", "telco_admin"), ("auditor", "auditor")):
        r = world.approve(job, approver, who)
        assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved", r.text
    return r.json()


CELL = h3.latlng_to_cell(31.2304, 121.4737, 8)
SENSITIVE = {
    "overlap": 321, "id_number": "110105199001011234", "msisdn": "13812345534", "consent": "1",
    "age": 37, "arpu": 1234.5, "hits_by_key": {"id_number": 7, "mobile": 9},
    "sites": [{"rank": 1, "cell": CELL, "lat": 31.2304, "lng": 121.4737, "demand": 88.0}],
}


def test_values_above_a_roles_clearance_reach_it_desensitised(world: World) -> None:
    # Prepare
    job = _sensitive_world(world)
    _finish(world, job, SENSITIVE, {"bank_queries": 500})

    # Execute
    views = _views(world, job["id"])

    # Assert: analyst and admin (clearance 3) see level-4 values ruled; compliance (5) sees them as reported
    shown = views["bank_analyst"]["bank"]
    print(f"analyst sees: {shown}")
    assert shown == {
        "overlap": 321, "id_number": "110105***********4", "msisdn": "138****5534", "age": "30-39",
        "arpu": "1,000-4,999", "hits_by_key": {"id_number": 7, "mobile": 9},  # counts per key type, not ids
        "sites": [{"rank": 1, "cell": h3.cell_to_parent(CELL, 6), "lat": "31.2", "lng": "121.4", "demand": 88.0}],
    }  # consent (drop) is gone
    assert views["bank_admin"]["bank"] == shown
    assert views["auditor"]["bank"] == SENSITIVE


def _exports_world(tmp_path: Path, grant_marketing: bool) -> tuple[TestClient, World, dict[str, Any]]:
    text = (Path(__file__).resolve().parents[2] / "coordinator" / "policy.yaml").read_text()
    if grant_marketing:
        text = text.replace("    - {role: operator, purpose: recovery}", "    - {role: operator, purpose: marketing}")
    tmp_path.mkdir(mode=0o700)
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    client = TestClient(create_app(app_settings(tmp_path, policy_path=policy)))
    world = World(client.__enter__()).populate()
    job = world.approved_job()
    _finish(world, job, {"overlap": 70}, {"bank_queries": 90})
    return client, world, job


def _export(world: World, job_id: int, full: bool, reason: str = "") -> Any:
    body = {"file": "/srv/out.csv", "rows": 3, "columns": ["customer_id", "msisdn"], "full": full,
            "reason": reason, "sha256": "ab" * 32}
    return world.c.post(f"{API}/jobs/{job_id}/exports", json=body, headers=world.h("telco_op"))


def test_a_full_export_needs_the_policys_grant_and_a_reason_and_every_export_is_audited(tmp_path: Path) -> None:
    # Prepare: the shipped policy grants full exports for recovery only; a copy grants the operator marketing
    client, world, job = _exports_world(tmp_path / "shipped", grant_marketing=False)
    granted_client, granted, granted_job = _exports_world(tmp_path / "granted", grant_marketing=True)
    try:
        # Execute
        seen = world.c.get(f"{API}/jobs/{job['id']}/disclosure", headers=world.h("telco_op")).json()
        refused = _export(world, job["id"], full=True, reason="call-back list")
        masked = _export(world, job["id"], full=False)
        no_reason = _export(granted, granted_job["id"], full=True)
        full = _export(granted, granted_job["id"], full=True, reason="call-back list, ticket 1234")
        events, granted_events = world.events(), granted.events()
    finally:
        client.__exit__(None, None, None)
        granted_client.__exit__(None, None, None)

    # Assert
    assert seen["clearance"] == 3 and seen["full_export"] is False and seen["fields"]["msisdn"]["level"] == 3
    assert refused.status_code == 403 and "may not export marketing results unmasked" in refused.text
    assert masked.status_code == 200 and no_reason.status_code == 400 and "body.reason" in no_reason.text
    assert full.status_code == 200 and full.json()["full"] is True
    exported = [e for e in events + granted_events if e["action"] == "output.exported"]
    assert [(e["actor"], e["details"]["full"], e["details"]["reason"]) for e in exported] == [
        ("user:telco_op", False, ""), ("user:telco_op", True, "call-back list, ticket 1234")]
    refusals = [e for e in events if e["action"] == "request.refused" and "exports" in str(e["details"])]
    assert len(refusals) == 1 and refusals[0]["actor"] == "user:telco_op"
    assert re.fullmatch(r"[0-9a-f]{64}", exported[1]["details"]["sha256"])
