"""Attacks on the approval gate, through a real coordinator (uvicorn, SQLite) and a real node runtime.

Issue 9, attacks 3 and 4: one signature must authorise one run (a bank admin who reports its own job
failed and retries it cannot make the telco's node run it again on the telco's old signature), and a
job that needs a compliance officer runs only with a signature under an auditor key the node itself
trusts, whatever the coordinator says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.store import JobUpdate
from node.runner import JobContext
from node.runtime import NodeRuntime
from node.settings import NodeSettings
from protocols.crypto.signing import SigningKey
from protocols.wire.control import JobKind, JobStatus
from tests.support.coordinator import API, World, field
from tests.support.served import served_coordinator

GOVERNANCE = """dataset: subscribers
fields:
  msisdn: {{type: string, category: identifier, security_level: {level}, key_type: mobile,
           purposes: [marketing, app_promotion]}}
  arpu: {{type: float, category: feature, security_level: 2, purposes: [marketing, app_promotion]}}
"""


class Telco:
    """The telco's node runtime against the served coordinator, with a handler that counts its runs."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime, self.runs = runtime, []
        self.during: Callable[[], object] = lambda: None  # what happens elsewhere while the job runs here

    def handle(self, ctx: JobContext) -> dict[str, Any]:
        self.runs.append((ctx.job.id, ctx.job.attempt))
        self.during()
        return {"overlap_size": 1000}

    def run_once(self) -> list[tuple[int, str, str]]:
        runner = self.runtime.runner({JobKind.AUDIENCE_OVERLAP: self.handle})
        return [(o.job_id, o.state, o.detail) for o in runner.run_once()]


def _setup(tmp_path: Path, url: str, client: Any, *, telco_level: int = 3,
           trusted_auditors: list[str] | None = None) -> tuple[World, Telco]:
    world = World(client)
    for name, (role, party) in World.USERS.items():
        world.add_user(name, role, party)
    settings = NodeSettings(party="telco", kind="telco", api_token=world.tokens["telco_admin"],
                            state_dir=tmp_path / "telco", coordinator_url=url,
                            auditor_keys=trusted_auditors if trusted_auditors is not None
                            else [world.auditor_key.public_hex])
    runtime = NodeRuntime.open(settings, create_keys=True)
    world.keys["telco"] = runtime.keys.signing  # the party's registered key is its node's key
    for party in ("bank", "telco"):
        from tests.support.coordinator import party_create
        body = party_create(party, party, world.keys[party]).model_dump(mode="json")
        assert client.post(f"{API}/parties", json=body, headers=world.h(f"{party}_admin")).status_code == 200
    world.register("bank", "customers", [field("mobile"), field("age", "feature", 2, None)])
    world.register("telco", "subscribers", [field("msisdn"), field("arpu", "feature", 2, None)])
    gov = tmp_path / "subscribers.yaml"
    gov.write_text(GOVERNANCE.format(level=telco_level))
    runtime.datasets.put(world.datasets["telco"], "subscribers", f"csv://{tmp_path}/unused.csv", gov)
    return world, Telco(runtime)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    with served_coordinator(tmp_path) as pair:
        yield pair


def _approved(world: World, job: dict[str, Any]) -> dict[str, Any]:
    world.approve(job, "party:bank", "bank_admin")
    approved = world.approve(job, "party:telco", "telco_admin").json()
    assert approved["status"] == "approved", approved
    return approved


def test_a_bank_admin_cannot_make_the_telco_run_a_job_again_by_failing_and_retrying_it(tmp_path, served):
    # Prepare: a job both parties signed once; while the telco's node runs it, the bank's admin reports
    # the job failed (so the telco's success report comes too late to stand) and retries it
    url, client = served
    world, telco = _setup(tmp_path, url, client)
    job = _approved(world, world.submit())

    def bank_fails_and_retries() -> None:
        client.post(f"{API}/jobs/{job['id']}/result", json={"status": "failed", "detail": "bank says so"},
                    headers=world.h("bank_admin"))
        retried = client.post(f"{API}/jobs/{job['id']}/retry", json={"reason": "again"},
                              headers=world.h("bank_admin"))
        if retried.status_code == 200 and retried.json()["status"] == "pending_approval":
            world.approve(retried.json(), "party:bank", "bank_admin")  # the bank signs every new attempt

    telco.during = bank_fails_and_retries

    # Execute: the telco's node polls four times
    for _ in range(4):
        telco.run_once()

    # Assert: it ran the job once, on the one signature its party gave; the retry waits for the telco
    assert telco.runs == [(job["id"], 1)]
    now = client.get(f"{API}/jobs/{job['id']}", headers=world.h("bank_admin")).json()
    assert (now["status"], now["attempt"]) == ("pending_approval", 2)
    assert [a["approver"] for a in now["approvals"]] == ["party:bank"]


def test_a_retry_runs_again_only_once_the_telco_signs_the_new_attempt(tmp_path, served):
    # Prepare: the first attempt failed at the telco
    url, client = served
    world, telco = _setup(tmp_path, url, client)
    job = _approved(world, world.submit())
    failing = telco.runtime.runner({JobKind.AUDIENCE_OVERLAP: lambda ctx: 1 / 0})
    assert [o.state for o in failing.run_once()] == ["failed"]
    retried = client.post(f"{API}/jobs/{job['id']}/retry", json={"reason": "fixed"}, headers=world.h("bank_admin"))
    assert retried.json()["status"] == "pending_approval"

    # Execute
    before = telco.run_once()
    _approved(world, retried.json())
    after = telco.run_once()

    # Assert
    assert before == [] and [(j, s) for j, s, _ in after] == [(job["id"], "succeeded")]
    assert telco.runs == [(job["id"], 2)]


def _force_approved(client: Any, job_id: int) -> None:
    """What a compromised coordinator does: mark a job approved without the approvals it requires."""
    store = client.app.state.context.store
    with store.write() as tx:
        tx.jobs.update_job(job_id, JobUpdate(status=JobStatus.APPROVED), client.app.state.context.clock())


def test_a_job_needing_an_auditor_does_not_run_on_the_parties_signatures_alone(tmp_path, served):
    # Prepare: the catalog marks msisdn level 4, so policy asks for an auditor; the coordinator is compromised
    url, client = served
    world, telco = _setup(tmp_path, url, client, telco_level=4)
    world.register("telco", "subscribers4", [field("msisdn", level=4), field("arpu", "feature", 2, None)])
    telco.runtime.datasets.put(world.datasets["telco"], "subscribers4", f"csv://{tmp_path}/unused.csv",
                               tmp_path / "subscribers.yaml")
    job = world.submit()
    assert "auditor" in job["required_approvals"]
    world.approve(job, "party:bank", "bank_admin")
    world.approve(job, "party:telco", "telco_admin")
    _force_approved(client, job["id"])

    # Execute
    outcomes = telco.run_once()

    # Assert
    assert [(s, "compliance officer" in d) for _, s, d in outcomes] == [("refused", True)]
    assert telco.runs == []


def test_the_node_requires_an_auditor_for_its_own_level_4_field_even_if_the_catalog_says_3(tmp_path, served):
    # Prepare: the telco's own governance rates msisdn 4; the coordinator's catalog has 3 (no auditor asked)
    url, client = served
    world, telco = _setup(tmp_path, url, client, telco_level=4)
    job = _approved(world, world.submit())
    assert "auditor" not in job["required_approvals"]

    # Execute
    refused = telco.run_once()

    # Assert
    assert [(s, "field msisdn has security level 4" in d) for _, s, d in refused] == [("refused", True)]
    assert telco.runs == []


def test_with_the_trusted_auditor_s_signature_the_job_runs(tmp_path, served):
    # Prepare: catalog and governance agree on level 4; the policy asks for the auditor, who signs
    url, client = served
    world, telco = _setup(tmp_path, url, client, telco_level=4)
    world.register("telco", "subscribers4", [field("msisdn", level=4), field("arpu", "feature", 2, None)])
    telco.runtime.datasets.put(world.datasets["telco"], "subscribers4", f"csv://{tmp_path}/unused.csv",
                               tmp_path / "subscribers.yaml")
    job = world.submit()
    world.approve(job, "auditor", "auditor")
    _approved(world, job)

    # Execute
    outcomes = telco.run_once()

    # Assert
    assert [s for _, s, _ in outcomes] == ["succeeded"] and telco.runs == [(job["id"], 1)]


def test_an_auditor_key_the_node_does_not_trust_does_not_count(tmp_path, served):
    # Prepare: the coordinator registered an "auditor" whose key the telco's node was never given
    url, client = served
    world, telco = _setup(tmp_path, url, client, telco_level=4, trusted_auditors=[SigningKey.generate().public_hex])
    job = _approved(world, world.submit())
    world.approve(job, "auditor", "auditor")

    # Execute
    outcomes = telco.run_once()

    # Assert
    assert [(s, "no auditor signature verifies" in d) for _, s, d in outcomes] == [("refused", True)]
    assert telco.runs == []
