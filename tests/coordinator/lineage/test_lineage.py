"""A job's lineage and a dataset's jobs, through the API, after a run between two real ledgers.

Prepare: a world over a TestClient, a job that filters on a field, re-registration of a dataset after the
job, an approved run with real ledgers and reports, an output export the node audits. Execute: the lineage
routes. Assert: what each viewer gets.
"""

from __future__ import annotations

from pathlib import Path

from coordinator.lineage import field_uses, is_output_access
from protocols.wire.control import DatasetPublic, JobInput
from tests.coordinator.lineage.federation import nodes, run_overlap
from tests.support.coordinator import API, World, field


def _lineage(world: World, job_id: int, who: str = "auditor"):
    return world.c.get(f"{API}/jobs/{job_id}/lineage", headers=world.h(who))


def _run(world: World, tmp_path: Path) -> tuple[dict, dict]:
    pair = nodes(world, tmp_path, transport=world.c._transport)
    return run_overlap(world, pair), pair


def test_the_lineage_lists_datasets_approvals_and_every_message_each_node_reported(world, tmp_path):
    job, pair = _run(world, tmp_path)

    r = _lineage(world, job["id"])

    assert r.status_code == 200, r.text
    lin = r.json()
    print("lineage:", {m["party"]: (m["messages_sent"], len(m["entries"])) for m in lin["messages"]})
    assert [d["dataset"]["id"] for d in lin["datasets"]] == [world.datasets["bank"], world.datasets["telco"]]
    bank_use = {f["name"]: f["uses"] for f in lin["datasets"][0]["fields"]}
    assert bank_use == {"mobile": ["key"], "id_number": [], "age": []}
    v = lin["datasets"][0]["version_at_submission"]
    assert v["schema_digest"] == lin["datasets"][0]["dataset"]["schema_digest"] and v["action"] == "dataset.registered"
    assert lin["policy_digest"] and len(lin["policy_digest"]) == 64
    assert [(a["approver"], a["actor"]) for a in lin["approvals"]] == [("party:bank", "user:bank_admin"),
                                                                       ("party:telco", "user:telco_admin")]
    for party, node in pair.items():
        reported = next(m for m in lin["messages"] if m["party"] == party)
        ledger = node.ledger.job_records(job["id"])[: reported["messages_sent"]]
        assert [(e["seq"], e["kind"], e["peer"], e["bytes"], e["digest"]) for e in reported["entries"]] == \
            [(x.seq, x.body["kind"], x.body["peer"], x.body["bytes"], x.body["digest"]) for x in ledger]
        assert reported["ledger_head"] == node.ledger.job_records(job["id"])[-2].hash  # the record before the report
    assert {m["party"]: m["output_keys"] for m in lin["messages"]} == {"bank": ["overlap"], "telco": ["bank_set_size"]}
    assert [e["actor"] for e in lin["results"]] == ["user:telco_op", "user:bank_admin"]


def test_who_read_or_exported_outputs_is_in_the_lineage(world, tmp_path):
    job, _ = _run(world, tmp_path)
    from coordinator.audit import log as audit_log

    ctx = world.c.app.state.context
    audit_log.record_alone(ctx, "user:bank_analyst", "output.exported", f"job:{job['id']}",
                           {"purpose": "recovery", "fields": ["mobile"]})

    accesses = _lineage(world, job["id"]).json()["accesses"]

    assert [(a["actor"], a["action"]) for a in accesses] == [("user:bank_analyst", "output.exported")]


def test_a_dataset_re_registered_after_the_job_shows_the_version_the_job_used(world, tmp_path):
    job, _ = _run(world, tmp_path)
    old = world.c.get(f"{API}/datasets/{world.datasets['bank']}", headers=world.h("auditor")).json()
    world.register("bank", "customers", [field("mobile"), field("age", "feature", 2, None)])

    used = _lineage(world, job["id"]).json()["datasets"][0]

    assert used["version_at_submission"]["schema_digest"] == old["schema_digest"]
    assert used["dataset"]["schema_digest"] != old["schema_digest"]


def test_the_jobs_parties_see_it_and_others_do_not(world, tmp_path):
    job, _ = _run(world, tmp_path)
    assert _lineage(world, job["id"], "bank_analyst").status_code == 200
    assert _lineage(world, job["id"], "telco_admin").status_code == 200
    assert _lineage(world, job["id"], "telco_op").status_code == 403  # the node role reads no lineage
    assert _lineage(world, 999).status_code == 404


def test_a_dataset_lists_every_job_that_touched_it(world, tmp_path):
    first, _ = _run(world, tmp_path)
    second = world.submit()

    r = world.c.get(f"{API}/datasets/{world.datasets['telco']}/lineage", headers=world.h("auditor"))
    mine = world.c.get(f"{API}/datasets/{world.datasets['telco']}/lineage", headers=world.h("bank_admin"))

    assert r.status_code == 200, r.text
    assert [t["job"]["id"] for t in r.json()["jobs"]] == [second["id"], first["id"]]
    assert [v["action"] for v in r.json()["versions"]] == ["dataset.registered"]
    assert mine.status_code == 404  # the bank does not own the telco's dataset


def test_field_uses_cover_every_use():
    ds = DatasetPublic(id=1, party="bank", name="c", description="", row_count=1, schema_digest="0" * 64,
                       created_at="2025-01-01T00:00:00Z", fields=[
                           field("mobile"), field("age", "feature", 2, None), field("default_flag", "label", 2, None),
                           field("consent", "feature", 2, None), field("city", "feature", 2, None)])
    inp = JobInput(dataset_id=1, key_fields=["mobile"], feature_fields=["age"], label_field="default_flag",
                   filter="age >= 25 and city == 'x'", output_fields=["mobile"], consent_field="consent")

    uses = {f.name: f.uses for f in field_uses(ds, inp)}

    assert uses == {"mobile": ("key", "output"), "age": ("feature", "filter"), "default_flag": ("label",),
                    "consent": ("consent",), "city": ("filter",)}
    assert is_output_access("output.exported") and is_output_access("output.read")
    assert not is_output_access("job.result") and not is_output_access("job.status")
