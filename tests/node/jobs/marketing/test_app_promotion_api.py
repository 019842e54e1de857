"""An ``app_promotion`` job's bad params through the real coordinator API: refused with the field named.

The model job of the wrong kind and an unknown app can only be checked where the model and the app usage
live (the nodes); those fail the job naming the param (``test_app_promotion_job.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coordinator.app import create_app
from tests.support.coordinator import API, TestClient, World, app_settings


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    with TestClient(create_app(app_settings(tmp_path))) as client:
        yield World(client).populate()


def _body(world: World, **params) -> dict:
    return {"kind": "app_promotion", "purpose": "app_promotion", "title": "promote the app",
            "inputs": [{"dataset_id": world.datasets["bank"], "key_fields": ["mobile"]},
                       {"dataset_id": world.datasets["telco"], "key_fields": ["msisdn"]}],
            "params": {"output_mode": "count", "model_job_id": 1, "bank_app": "bank_app", **params}}


@pytest.mark.parametrize(("params", "field"), [
    ({"score_threshold": 1.5}, "body.params.score_threshold"),
    ({"score_threshold": -0.1}, "body.params.score_threshold"),
    ({"score_threshold": 0.5, "holdout_share": 0.9}, "body.params.holdout_share"),
    ({"score_threshold": 0.5, "bank_app": "bank app!"}, "body.params.bank_app"),
    ({"score_threshold": 0.5, "channel": "carrier-pigeon"}, "body.params.channel"),
])
def test_out_of_range_params_are_refused_naming_the_field(world: World, params: dict, field: str) -> None:
    before = len(world.c.get(f"{API}/jobs", headers=world.h("auditor")).json())
    r = world.c.post(f"{API}/jobs", json=_body(world, **params), headers=world.h("bank_analyst"))
    assert r.status_code == 422, r.text
    (detail,) = [d for d in r.json()["detail"] if d["field"] == field]
    assert detail["message"] and detail["fix"]
    assert len(world.c.get(f"{API}/jobs", headers=world.h("auditor")).json()) == before


def test_a_well_formed_job_is_stored_with_its_params_signed(world: World) -> None:
    r = world.c.post(f"{API}/jobs", json=_body(world, score_threshold=0.6, holdout_share=0.2, arm_seed=9),
                     headers=world.h("bank_analyst"))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["params"]["score_threshold"] == 0.6 and job["params"]["arm_seed"] == 9
    events = [e for e in world.events() if e["object"] == f"job:{job['id']}"]
    assert {"job.submitted", "policy.decided"} <= {e["action"] for e in events}
