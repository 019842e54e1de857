"""What the coordinator writes into the signed terms so that nodes never rely on its word at run time.

Each input names its owning party (a node learns its one counterparty from what it signed), and
``params.min_cell`` carries the policy's k, so raising ``k_min_cell`` in the policy YAML reaches the
nodes with the next job (they keep no copy of the policy).
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from coordinator.app import create_app
from coordinator.policy import DEFAULT_POLICY_PATH
from node.jobs.psi._node import k_of
from protocols.wire.control import JobParams
from tests.support.coordinator import API, World, app_settings, expected_digest


def test_inputs_name_their_party_and_the_digest_covers_it(world):
    job = world.submit()

    assert [(i["dataset_id"], i["party"]) for i in job["inputs"]] == [
        (world.datasets["bank"], "bank"), (world.datasets["telco"], "telco")]
    assert job["digest"] == expected_digest(job) and job["attempt"] == 1


def test_an_input_claiming_the_wrong_party_is_refused_naming_the_field(world):
    body = world.job_body()
    body["inputs"][1]["party"] = "bank"

    r = world.c.post(f"{API}/jobs", json=body, headers=world.h("bank_analyst"))

    assert r.status_code == 400
    (detail,) = r.json()["detail"]
    assert detail["field"] == "body.inputs.1.party" and "belongs to party 'telco'" in detail["message"]
    assert detail["fix"] == "set party to 'telco' or leave it out"


def test_raising_k_in_the_policy_file_reaches_the_nodes_through_the_signed_terms(tmp_path: Path):
    # Prepare: the shipped policy with k_min_cell raised from 50 to 80
    text = DEFAULT_POLICY_PATH.read_text()
    assert "k_min_cell: 50" in text
    policy = tmp_path / "policy.yaml"
    policy.write_text(text.replace("k_min_cell: 50", "k_min_cell: 80"))

    with TestClient(create_app(app_settings(tmp_path, policy_path=policy))) as client:
        world = World(client).populate()

        # Execute
        job = world.submit()
        asked_more = client.post(f"{API}/jobs", json={**world.job_body(), "params": {"output_mode": "count",
                                                                                    "min_cell": 120}},
                                 headers=world.h("bank_analyst")).json()

    # Assert: the terms carry the policy's k, which is what a node suppresses below
    assert job["params"]["min_cell"] == 80 and job["digest"] == expected_digest(job)
    assert k_of(JobParams.model_validate(job["params"])) == 80
    assert asked_more["params"]["min_cell"] == 120  # a job may ask for more, never less (R11)
