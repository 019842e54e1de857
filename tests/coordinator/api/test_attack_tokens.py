"""Item 10 of issue 9: tokens that can be revoked, that expire, and a node token narrower than admin.

All against a real uvicorn coordinator: a stolen token is revoked by its party's admin (or an auditor,
or ``tandem-coordinator user revoke``) and is refused with 401 at once; an expired token is refused with
401 and says what to do; a bank's node runs with an ``operator`` token, which serves the node endpoints
and nothing an admin may do.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from typer.testing import CliRunner

from coordinator.accounts import EXPIRED
from coordinator.cli import app as cli_app
from tests.coordinator.api.conftest import LiveCoordinator
from tests.support.coordinator import API, BOOT, World


def _refusal(world: World, token: str) -> tuple[int, str]:
    r = world.c.get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"})
    return r.status_code, r.json()["detail"][0]["message"] if r.status_code >= 400 else ""


def test_a_revoked_token_gets_401_at_once(live_world: World) -> None:
    world = live_world
    stolen = world.add_user("bank_clerk", "analyst", "bank")
    assert _refusal(world, stolen) == (200, "")

    other = world.c.post(f"{API}/users/bank_clerk/revoke", headers=world.h("telco_admin"))
    analyst = world.c.post(f"{API}/users/bank_clerk/revoke", headers=world.h("bank_analyst"))
    assert (other.status_code, analyst.status_code) == (403, 403)
    assert other.json()["detail"][0]["field"] == "path.name"
    assert _refusal(world, stolen) == (200, "")
    revoked = world.c.post(f"{API}/users/bank_clerk/revoke", headers=world.h("bank_admin"))

    assert revoked.status_code == 200, revoked.text
    assert _refusal(world, stolen) == (401, EXPIRED)
    events = [e for e in world.events() if e["action"] == "user.revoked"]
    assert [(e["actor"], e["object"]) for e in events] == [("user:bank_admin", "user:bank_clerk")]
    missing = world.c.post(f"{API}/users/nobody/revoke", headers=world.h("auditor"))
    assert missing.status_code == 404 and missing.json()["detail"][0]["field"] == "path.name"


def test_an_auditor_revokes_any_user(live_world: World) -> None:
    world = live_world
    assert world.c.post(f"{API}/users/telco_admin/revoke", headers=world.h("auditor")).status_code == 200
    assert _refusal(world, world.tokens["telco_admin"]) == (401, EXPIRED)


def test_the_cli_revokes_a_token_the_running_server_then_refuses(
        live: LiveCoordinator, live_world: World, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = live_world
    monkeypatch.setenv("TANDEM_COORD_DATABASE_URL", f"sqlite:///{tmp_path}/coord.db")
    monkeypatch.setenv("TANDEM_COORD_SIGNING_KEY_PATH", str(tmp_path / "coordinator.key"))
    monkeypatch.setenv("TANDEM_COORD_BOOTSTRAP_TOKEN", BOOT)

    result = CliRunner().invoke(cli_app, ["user", "revoke", "bank_analyst"])

    assert result.exit_code == 0, result.output
    assert "revoked" in result.output
    assert _refusal(world, world.tokens["bank_analyst"]) == (401, EXPIRED)
    unknown = CliRunner().invoke(cli_app, ["user", "revoke", "nobody"])
    assert unknown.exit_code == 2 and "nobody" in unknown.output


def test_an_expired_token_gets_401_saying_what_to_do(live: LiveCoordinator, live_world: World) -> None:
    world = live_world
    r = world.c.post(f"{API}/users", json={"name": "temp", "role": "analyst", "party": "bank", "expires_in_days": 1},
                     headers=world.h("bank_admin"))
    token = r.json()["token"]
    assert _refusal(world, token) == (200, "")

    live.advance(timedelta(days=1))

    assert _refusal(world, token) == (401, EXPIRED)
    assert "ask your admin for a new one" in EXPIRED


def test_a_banks_node_token_serves_the_node_and_nothing_more(live_world: World) -> None:
    world = live_world
    r = world.c.post(f"{API}/users", json={"name": "bank_node", "role": "operator", "party": "bank"},
                     headers=world.h("bank_admin"))
    assert r.status_code == 201, r.text  # before: 400, an operator had to be the telco's
    world.tokens["bank_node"] = r.json()["token"]
    job = world.approved_job()
    node = world.h("bank_node")

    assert world.c.get(f"{API}/nodes/jobs", params={"status": "approved"}, headers=node).json()[0]["id"] == job["id"]
    assert world.c.get(f"{API}/jobs/{job['id']}", headers=node).status_code == 200
    assert world.c.get(f"{API}/parties/telco", headers=node).status_code == 200
    assert world.c.get(f"{API}/datasets/{world.datasets['telco']}", headers=node).status_code == 200
    progress = world.c.post(f"{API}/jobs/{job['id']}/progress", json={"stage": "psi", "fraction": 0.5,
                                                                    "status": "running"}, headers=node)
    assert progress.status_code == 200, progress.text

    approval = {"approver": "party:bank", "signature": world.keys["bank"].sign_approval(job["digest"])}
    refused = {
        "create user": world.c.post(f"{API}/users", json={"name": "x1", "role": "analyst", "party": "bank"},
                                    headers=node),
        "approve job": world.c.post(f"{API}/jobs/{job['id']}/approvals", json=approval, headers=node),
        "submit job": world.c.post(f"{API}/jobs", json=world.job_body(), headers=node),
        "register dataset": world.c.post(f"{API}/datasets", json={"name": "d", "row_count": 1, "fields": []},
                                         headers=node),
        "revoke user": world.c.post(f"{API}/users/bank_admin/revoke", headers=node),
        "read audit": world.c.get(f"{API}/audit/events", headers=node),
    }
    assert {what: r.status_code for what, r in refused.items()} == dict.fromkeys(refused, 403)
