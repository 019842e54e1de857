"""Hostile free-form input through a real coordinator process: deeply nested job outputs, huge filter numbers.

A node (any party admin's token) that posts outputs nested 10,000 deep, or a few hundred deep, gets a 422
naming the field and the limit, and the job is left as it was; an analyst whose filter holds a 490-digit
number is refused at submission, so the job can never be approved and reach the node that would overflow.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from protocols.wire.control import MAX_OUTPUTS_DEPTH
from protocols.wire.filters import MAX_NUMBER_DIGITS
from tests.support.coordinator import API, World
from tests.support.live_coordinator import LiveCoordinator


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    live = LiveCoordinator(tmp_path_factory.mktemp("limits") / "state")
    assert live.start() is None, live.output()
    try:
        with live.client() as client:
            yield World(client).populate()
    finally:
        live.stop()


def _nested_outputs(depth: int) -> str:
    return '{"status":"succeeded","outputs":{"count":' + "[" * depth + "]" * depth + "}}"


@pytest.mark.parametrize(("depth", "field"), [(10_000, "body"), (500, "body.outputs"),
                                              (MAX_OUTPUTS_DEPTH + 1, "body.outputs")])
def test_deeply_nested_outputs_get_a_422_naming_the_limit(world, depth, field):
    job = world.approved_job()
    url, headers = f"{API}/jobs/{job['id']}/result", {**world.h("bank_admin"), "Content-Type": "application/json"}
    r = world.c.post(url, content=_nested_outputs(depth), headers=headers)
    assert r.status_code == 422, r.text
    (detail,) = r.json()["detail"]
    assert detail["field"] == field and f"{MAX_OUTPUTS_DEPTH} levels" in detail["message"]
    print(f"outputs nested {depth} deep -> {r.status_code} {detail['field']}: {detail['message'][:90]}")

    assert world.c.get(f"{API}/jobs/{job['id']}", headers=world.h("bank_admin")).json()["outputs"] == {}
    ok = world.c.post(url, content=_nested_outputs(MAX_OUTPUTS_DEPTH - 2), headers=headers)  # nothing half-written
    assert ok.status_code == 200, ok.text


def test_a_490_digit_filter_number_is_refused_at_submission(world):
    body = world.job_body()
    body["inputs"][0]["filter"] = "age >= " + "9" * 490
    r = world.c.post(f"{API}/jobs", json=body, headers=world.h("bank_analyst"))
    job = r.json()
    assert job["status"] == "rejected", r.text
    (denial,) = [rule for rule in job["decision"]["rules"] if not rule["allowed"]]
    assert denial["rule_id"].startswith("R15") and denial["field"] == "customers.filter"
    assert f"at most {MAX_NUMBER_DIGITS} significant digits" in denial["message"]
    assert "use a shorter number" in denial["message"]
    print(f"490-digit filter -> {r.status_code} {job['status']}: {denial['message'][:160]}")
    refused = world.approve(job, "party:bank", "bank_admin")
    assert refused.status_code == 409, refused.text


@pytest.mark.parametrize("epsilon", [1e-320, 0.0, 0.009, 11.0])
def test_an_epsilon_outside_its_range_is_refused_at_submission(world, epsilon):
    body = world.job_body()
    body["params"]["epsilon"] = epsilon
    before = len(world.c.get(f"{API}/jobs", headers=world.h("bank_analyst")).json())

    r = world.c.post(f"{API}/jobs", json=body, headers=world.h("bank_analyst"))

    assert r.status_code == 422, r.text
    (detail,) = r.json()["detail"]
    assert detail["field"] == "body.params.epsilon", detail
    assert len(world.c.get(f"{API}/jobs", headers=world.h("bank_analyst")).json()) == before  # nothing stored
