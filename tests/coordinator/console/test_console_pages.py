"""The console pages over TestClient: the inbox, a job's page, approving by a pasted signature, rejecting, the policy.

Sessions are opened directly in the app's registry (``session_cookie``) so the gate itself is tested for
every role; the login form (auditors only) is exercised by the browser test.
"""

from __future__ import annotations

import re

import pytest

from coordinator import console
from coordinator.accounts import Principal
from coordinator.app import create_app
from coordinator.policy import DEFAULT_POLICY_PATH, RULE_IDS
from coordinator.store import MemoryStore
from protocols.crypto.signing import SigningKey
from protocols.wire.control import Role
from tests.coordinator.console.conftest import add_id_datasets, session_cookie, submit_auditor_job
from tests.support.coordinator import API, TestClient, World, app_settings


def _inbox_ids(world: World, who: str = "auditor") -> list[int]:
    r = world.c.get("/console/approvals", headers=session_cookie(world, who))
    assert r.status_code == 200, r.text
    return [int(i) for i in re.findall(r'<a href="/console/jobs/(\d+)">', r.text)]


def _post(world: World, job: dict, action: str, data: dict[str, str], who: str = "auditor", **headers: str):
    return world.c.post(f"/console/jobs/{job['id']}/{action}", data=data, follow_redirects=False,
                        headers=session_cookie(world, who) | headers)


def _events(world: World, job: dict, action: str) -> list[dict]:
    return [e for e in world.events() if e["action"] == action and e["object"] == f"job:{job['id']}"]


def test_inbox_lists_what_waits_on_the_auditor_and_the_approval_empties_it(id_world):
    waiting = submit_auditor_job(id_world)
    ordinary = id_world.submit()  # needs the parties only: never in the auditor's inbox
    assert _inbox_ids(id_world) == [waiting["id"]]

    page = id_world.c.get(f"/console/jobs/{waiting['id']}", headers=session_cookie(id_world, "auditor")).text
    assert f'<code id="digest">{waiting["digest"]}</code>' in page and 'id="approve-form"' in page
    assert "level 4" in page and "subscribers_by_id" in page and "R10-auditor-level" in page
    signature = id_world.auditor_key.sign_approval(waiting["digest"])

    r = _post(id_world, waiting, "approve", {"signature": signature})

    assert r.status_code == 303 and r.headers["location"] == f"/console/jobs/{waiting['id']}?done=approved"
    assert _inbox_ids(id_world) == []
    job = id_world.c.get(f"{API}/jobs/{waiting['id']}", headers=id_world.h("auditor")).json()
    assert [(a["approver"], a["user"]) for a in job["approvals"]] == [("auditor", "auditor")]
    added = _events(id_world, waiting, "approval.added")
    assert len(added) == 1 and added[0]["details"]["signer_key"] == id_world.auditor_key.public_hex
    after = id_world.c.get(r.headers["location"], headers=session_cookie(id_world, "auditor")).text
    assert "Your approval was recorded." in after and 'id="approve-form"' not in after
    assert ordinary["id"] not in _inbox_ids(id_world)
    print(f"inbox: job {waiting['id']} waited on the auditor; after the pasted signature the inbox is empty")


@pytest.mark.parametrize("case", ["forged", "stale", "malformed"])
def test_a_bad_signature_is_a_clear_refusal_audited(id_world, case):
    job = submit_auditor_job(id_world)
    other = submit_auditor_job(id_world, title="another job")
    signature = {"forged": SigningKey.generate().sign_approval(job["digest"]),   # not the officer's key
                 "stale": id_world.auditor_key.sign_approval(other["digest"]),   # the officer's, other terms
                 "malformed": "abc123"}[case]

    r = _post(id_world, job, "approve", {"signature": signature})

    expected = 400 if case == "malformed" else 403
    assert r.status_code == expected and r.headers["content-type"].startswith("text/html"), r.text
    assert ("does not verify" if case != "malformed" else "128 hex characters") in r.text
    assert "Traceback" not in r.text
    action = "request.refused" if case == "malformed" else "approval.refused"
    refused = _events(id_world, job, action)
    assert len(refused) == 1 and refused[0]["actor"] == "user:auditor", refused
    assert job["id"] in _inbox_ids(id_world)
    print(f"{case} signature: HTTP {r.status_code}, audited as {action}")


def test_cross_site_form_post_is_refused(id_world):
    job = submit_auditor_job(id_world)
    signature = id_world.auditor_key.sign_approval(job["digest"])
    r = _post(id_world, job, "approve", {"signature": signature}, origin="https://evil.example")
    assert r.status_code == 403 and "cross-site" in r.text
    assert job["id"] in _inbox_ids(id_world)


def test_rejecting_from_the_page(id_world):
    job = submit_auditor_job(id_world)

    r = _post(id_world, job, "reject", {"reason": "the <b>purpose</b> is too broad"})

    assert r.status_code == 303, r.text
    page = id_world.c.get(r.headers["location"], headers=session_cookie(id_world, "auditor")).text
    assert "cancelled: rejected by user:auditor: the &lt;b&gt;purpose&lt;/b&gt; is too broad" in page
    assert 'id="reject-form"' not in page and job["id"] not in _inbox_ids(id_world)
    assert _events(id_world, job, "job.rejected")[0]["details"]["reason"] == "the <b>purpose</b> is too broad"
    empty = _post(id_world, submit_auditor_job(id_world), "reject", {"reason": "  "})
    assert empty.status_code == 400 and "needs a reason" in empty.text


@pytest.mark.parametrize("who", ["bank_admin", "bank_analyst", "telco_op"])
def test_other_roles_never_reach_the_approval_form(id_world, who):
    job = submit_auditor_job(id_world)
    for path in ("/console/approvals", f"/console/jobs/{job['id']}", "/console/policy"):
        r = id_world.c.get(path, headers=session_cookie(id_world, who))
        assert r.status_code == 403 and "approve-form" not in r.text, (who, path)
    signature = id_world.auditor_key.sign_approval(job["digest"])  # even holding the officer's signature
    r = _post(id_world, job, "approve", {"signature": signature}, who=who)
    assert r.status_code == 403
    assert id_world.c.get(f"/console/jobs/{job['id']}").status_code == 401  # no session: the login form


def test_party_admin_inbox_in_the_service(id_world):
    job = submit_auditor_job(id_world)
    ctx = id_world.c.app.state.context
    bank_admin = Principal("bank_admin", Role.ADMIN, "bank")
    analyst = Principal("bank_analyst", Role.ANALYST, "bank")
    assert [j.id for j in console.inbox(ctx, bank_admin)] == [job["id"]]
    assert console.inbox(ctx, analyst) == [] and console.approver_for(analyst) is None

    console.approve_with(ctx, bank_admin, job["id"], id_world.keys["bank"].sign_approval(job["digest"]))

    assert console.inbox(ctx, bank_admin) == []
    assert [j.id for j in console.inbox(ctx, Principal("telco_admin", Role.ADMIN, "telco"))] == [job["id"]]


def test_policy_page_lists_every_rule_and_each_version_with_its_jobs(tmp_path):
    store = MemoryStore()
    with TestClient(create_app(app_settings(tmp_path), store=store)) as c:
        world = World(c).populate()
        first = world.submit()
    text = DEFAULT_POLICY_PATH.read_text()
    version = re.search(r'^version: "([^"]+)"', text, re.M).group(1)
    newer = tmp_path / "policy.yaml"
    newer.write_text(text.replace(f'version: "{version}"', 'version: "2999-01-01.1"'))
    with TestClient(create_app(app_settings(tmp_path, policy_path=newer), store=store)) as c:
        world.c = c
        second = world.submit()
        page = c.get("/console/policy", headers=session_cookie(world, "auditor")).text

    assert all(f'id="rule-{rule_id}"' in page for rule_id in RULE_IDS)
    assert "k_min_cell = 50" in page and "auditor_level = 4" in page
    rows = re.findall(r"<tr><td>([^<]+)</td><td><code>([0-9a-f]{64})</code></td><td>([^<]+)</td>(.*?)</tr>", page)
    table = {v: (state, re.findall(r"/console/jobs/(\d+)", rest)) for v, _, state, rest in rows}
    assert table == {"2999-01-01.1": ("in force", [str(second["id"])]), version: ("past", [str(first["id"])])}
    print(f"policy history: {version} -> job {first['id']}; 2999-01-01.1 (in force) -> job {second['id']}")


def test_a_version_reused_with_another_digest_is_flagged(tmp_path):
    store = MemoryStore()
    with TestClient(create_app(app_settings(tmp_path), store=store)):
        pass
    edited = tmp_path / "policy.yaml"
    edited.write_text(DEFAULT_POLICY_PATH.read_text().replace("k_min_cell: 50", "k_min_cell: 60"))
    with TestClient(create_app(app_settings(tmp_path, policy_path=edited), store=store)) as c:
        world = World(c).populate()
        page = c.get("/console/policy", headers=session_cookie(world, "auditor")).text
    assert page.count("same version, other digest") == 2 and "k_min_cell = 60" in page


def test_add_id_datasets_keeps_the_ordinary_world(world):
    add_id_datasets(world)
    assert world.submit()["status"] == "pending_approval"


def test_a_signature_of_an_earlier_attempt_is_stale_after_a_retry(id_world):
    job = submit_auditor_job(id_world)
    old = id_world.auditor_key.sign_approval(job["digest"])
    for approver, who in (("auditor", "auditor"), ("party:bank", "bank_admin"), ("party:telco", "telco_admin")):
        assert id_world.approve(job, approver, who).status_code == 200
    failed = id_world.c.post(f"{API}/jobs/{job['id']}/progress", headers=id_world.h("telco_op"),
                             json={"stage": "psi", "fraction": 0.1, "status": "failed", "detail": "peer down"})
    assert failed.json()["status"] == "failed", failed.text
    retried = id_world.c.post(f"{API}/jobs/{job['id']}/retry", headers=id_world.h("bank_analyst"),
                              json={"reason": "peer back"}).json()
    assert retried["status"] == "pending_approval" and retried["digest"] != job["digest"]
    assert job["id"] in _inbox_ids(id_world)

    r = _post(id_world, job, "approve", {"signature": old})

    assert r.status_code == 403 and "does not verify" in r.text
    assert len(_events(id_world, job, "approval.refused")) == 1 and job["id"] in _inbox_ids(id_world)
    fresh = _post(id_world, job, "approve", {"signature": id_world.auditor_key.sign_approval(retried["digest"])})
    assert fresh.status_code == 303 and job["id"] not in _inbox_ids(id_world)
