"""Bad input is a 4xx naming the field, never a 500, and never leaves a half-written row."""

from __future__ import annotations

import pytest

import coordinator.audit.log
from coordinator.app import create_app
from coordinator.audit.chain import AuditError
from tests.support.coordinator import API, TestClient, app_settings


def _jobs_and_events(world):
    jobs = world.c.get(f"{API}/jobs", headers=world.h("auditor")).json()
    return len(jobs), len(world.events())


def test_malformed_json_names_the_body(world):
    r = world.c.post(f"{API}/jobs", content=b'{"kind": ', headers={**world.h("bank_analyst"),
                                                                    "content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "body" and "malformed JSON" in r.json()["detail"][0]["message"]


def test_unknown_and_missing_fields_are_named(world):
    body = {**world.job_body(), "priority": 1}
    del body["title"]
    body["inputs"][0]["dataset_id"] = "seven"
    r = world.c.post(f"{API}/jobs", json=body, headers=world.h("bank_analyst"))
    fields = {d["field"] for d in r.json()["detail"]}
    assert r.status_code == 422
    assert {"body.priority", "body.title", "body.inputs.0.dataset_id"} <= fields
    assert all(d["message"] and d["fix"] for d in r.json()["detail"])


def test_unknown_dataset_is_404_naming_the_field_and_writes_nothing_but_the_refusal(world):
    jobs_before, events_before = _jobs_and_events(world)
    body = world.job_body()
    body["inputs"][1]["dataset_id"] = 2**62
    r = world.c.post(f"{API}/jobs", json=body, headers=world.h("bank_analyst"))
    assert r.status_code == 404 and r.json()["detail"][0]["field"] == "body.inputs.1.dataset_id"
    jobs_after, events_after = _jobs_and_events(world)
    assert jobs_after == jobs_before
    (refusal,) = [e for e in world.events() if e["action"] == "request.refused"]
    assert events_after == events_before + 1 and refusal["details"]["status"] == 404


@pytest.mark.parametrize("path", ["/jobs/0", "/jobs/99999999999999999999999", "/datasets/-1", "/jobs/abc"])
def test_bad_path_ids_are_422(world, path):
    r = world.c.get(f"{API}{path}", headers=world.h("auditor"))
    assert r.status_code == 422 and r.json()["detail"][0]["field"].startswith("path.")


def test_unknown_job_is_404(world):
    r = world.c.post(f"{API}/jobs/4242/cancel", headers=world.h("bank_admin"))
    assert r.status_code == 404 and "4242" in r.json()["detail"][0]["message"]


def test_nan_outputs_are_refused(world):
    job = world.approved_job()
    r = world.c.post(f"{API}/jobs/{job['id']}/result", content=b'{"status": "succeeded", "outputs": {"x": NaN}}',
                     headers={**world.h("bank_admin"), "content-type": "application/json"})
    assert r.status_code in (400, 422) and r.json()["detail"][0]["field"] == "body.outputs"


def test_oversized_body_is_413_before_parsing(tmp_path):
    with TestClient(create_app(app_settings(tmp_path, max_body_bytes=2048))) as c:
        big = b'{"name": "' + b"x" * 4096 + b'"}'
        declared = c.post(f"{API}/users", content=big, headers={"content-type": "application/json"})

        def chunks():
            for _ in range(8):
                yield b"x" * 1024

        streamed = c.post(f"{API}/users", content=chunks(), headers={"content-type": "application/json"})
    for r in (declared, streamed):
        assert r.status_code == 413 and r.json()["detail"][0]["field"] == "body"


def test_unknown_route_uses_the_error_shape(world):
    r = world.c.get(f"{API}/nothing-here")
    assert r.status_code == 404 and r.json()["detail"][0]["message"]


def test_failure_after_a_write_rolls_back_everything(world, monkeypatch):
    before = _jobs_and_events(world)
    real = coordinator.audit.log.event_body

    def fail_on_decision(actor, action, obj, details):
        if action == "policy.decided":
            raise AuditError("simulated failure after the job row was written")
        return real(actor, action, obj, details)

    monkeypatch.setattr(coordinator.audit.log, "event_body", fail_on_decision)
    client = TestClient(world.c.app)  # raises what reaches the server: a 503 must be handled, not re-raised
    r = client.post(f"{API}/jobs", json=world.job_body(), headers=world.h("bank_analyst"))
    monkeypatch.undo()

    assert r.status_code == 500 and r.json()["detail"][0]["message"] == "internal error"
    assert _jobs_and_events(world) == before


def test_a_database_that_is_down_is_a_503_that_says_so_and_changes_nothing(world, monkeypatch):
    from sqlalchemy.exc import OperationalError

    before = _jobs_and_events(world)
    real = coordinator.audit.log.event_body

    def connection_lost(actor, action, obj, details):
        if action == "policy.decided":  # mid-transaction, after the job row was written
            raise OperationalError("INSERT INTO audit_events", {}, ConnectionError("server closed the connection"))
        return real(actor, action, obj, details)

    monkeypatch.setattr(coordinator.audit.log, "event_body", connection_lost)
    client = TestClient(world.c.app)  # raises what reaches the server: a 503 must be handled, not re-raised
    r = client.post(f"{API}/jobs", json=world.job_body(), headers=world.h("bank_analyst"))
    monkeypatch.undo()

    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    detail = r.json()["detail"][0]
    assert "database is unavailable" in detail["message"] and "nothing was changed" in detail["message"]
    assert "TANDEM_COORD_DATABASE_URL" in detail["fix"]
    assert "server closed" not in r.text  # the driver's text stays in the coordinator's log
    assert _jobs_and_events(world) == before
