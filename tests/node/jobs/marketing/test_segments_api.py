"""A ``segment_sizes`` job through the real coordinator API: bad segment files are refused by rule R17.

Each refusal names the segment, the field and a fix; the job is recorded as rejected with its decision
(never pending approval, no ε charged) and the submission and decision are in the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.app import create_app
from demo.steps import GOVERNANCE
from node.governance import load_governance
from protocols.wire.segments import segment_params, segments_sha256
from tests.support.coordinator import API, TestClient, World, app_settings

ROOT = Path(__file__).resolve().parents[4]
EXAMPLE = (ROOT / "examples" / "segments" / "segments.yaml").read_text()


def _fields(name: str) -> list[dict[str, Any]]:
    gov = load_governance(GOVERNANCE / f"{name}.yaml")
    return [{"name": f, "type": r.type, "category": r.category.value, "security_level": r.security_level,
             "desensitisation": r.desensitisation.value, "purposes": [p.value for p in r.purposes],
             "key_type": r.key_type.value if r.key_type else None} for f, r in gov.fields.items()]


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    with TestClient(create_app(app_settings(tmp_path))) as client:
        w = World(client).populate()
        w.register("bank", "bank_customers", _fields("bank_customers"))
        w.register("telco", "telco_subscribers", _fields("telco_subscribers"))
        yield w


def _submit(world: World, text: str, **override: Any) -> dict[str, Any]:
    bound = {"segments": text, "segments_sha256": segments_sha256(text), "segments_version": "2026-12-05.1"}
    params = {"output_mode": "count", "epsilon": 1.0, **bound, **override}
    body = {"kind": "segment_sizes", "purpose": "marketing", "title": "segment sizes",
            "inputs": [{"dataset_id": world.datasets["bank"], "key_fields": ["id_number"],
                        "feature_fields": ["has_fund", "has_stock"]},
                       {"dataset_id": world.datasets["telco"], "key_fields": ["id_number"]}],
            "params": params}
    r = world.c.post(f"{API}/jobs", json=body, headers=world.h("bank_analyst"))
    assert r.status_code == 201, r.text
    return r.json()


def _denials(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in job["decision"]["rules"] if not r["allowed"]]


def _refused_and_audited(world: World, job: dict[str, Any]) -> dict[str, Any]:
    assert job["status"] == "rejected" and job["status_detail"] == "denied by policy: R17-segments"
    (denial,) = _denials(job)
    events = [e for e in world.events() if e["object"] == f"job:{job['id']}"]
    assert events and any("R17-segments" in str(e["details"]) for e in events), events
    budgets = world.c.get(f"{API}/budgets", headers=world.h("auditor")).json()
    assert budgets["pairs"] == []  # nothing charged: a rejected job spends no ε
    return denial


def test_the_example_segments_are_accepted_and_bound_into_the_terms(world: World):
    job = _submit(world, EXAMPLE)
    assert job["status"] == "pending_approval", _denials(job)
    r17 = next(r for r in job["decision"]["rules"] if r["rule_id"] == "R17-segments")
    assert r17["allowed"]
    params = job["params"]
    assert params["segments_version"] == "2026-12-05.1" and params["segments"] == EXAMPLE
    assert params["segments_sha256"] == segment_params(EXAMPLE)["segments_sha256"]


def test_an_unknown_field_is_refused_naming_the_segment_and_field(world: World):
    denial = _refused_and_audited(world, _submit(world, EXAMPLE.replace("has_children == 1", "kids == 1")))
    assert denial["field"] == "telco_subscribers.kids"
    assert "'families_with_children'" in denial["message"] and "not a field" in denial["message"]
    assert "use one of" in denial["fix"] and "has_children" in denial["fix"]


@pytest.mark.parametrize(("rule", "field", "words"), [
    ("msisdn == '13800000000'", "telco_subscribers.msisdn", "category is identifier"),
    ("silent_days > 10", "telco_subscribers.silent_days", "purposes exclude 'marketing'"),
])
def test_a_forbidden_field_is_refused(world: World, rule: str, field: str, words: str):
    denial = _refused_and_audited(world, _submit(world, EXAMPLE.replace("business_traveller == 1", rule)))
    assert denial["field"] == field and words in denial["message"] and "'business_people'" in denial["message"]


def test_a_threshold_out_of_range_and_malformed_yaml_are_refused(world: World):
    scored = EXAMPLE + "  - name: prospects\n    score: {model_job_id: 3, threshold: 1.2}\n"
    denial = _refused_and_audited(world, _submit(world, scored))
    assert "outside [0, 1]" in denial["message"] and "'prospects'" in denial["message"]
    assert denial["field"] == "params.segments: segments[9].score.threshold"
    denial = _refused_and_audited(world, _submit(world, "version: [1\n"))
    assert "not valid YAML" in denial["message"] and denial["fix"]


def test_a_file_other_than_the_bound_one_is_refused(world: World):
    denial = _refused_and_audited(world, _submit(world, EXAMPLE, segments_sha256="0" * 64))
    assert denial["field"] == "params.segments_sha256" and "SHA-256" in denial["message"]
