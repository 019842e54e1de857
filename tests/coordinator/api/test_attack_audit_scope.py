"""Attack 5 of issue 9: a bank admin reads another bank's jobs, datasets and users from the audit log.

A second bank (``bank2``) joins the federation served by a real uvicorn coordinator. The first bank and
the telco run a job; bank2's admin then reads ``GET /api/v1/audit/events``. Before the defence it saw
every event (the other bank's job with its parties, datasets and purpose); now it sees only events about
its own party, decided per event from stored fields (``coordinator.audit.review.concerned_parties``).
"""

from __future__ import annotations

from typing import Any

from tests.coordinator.api.conftest import LiveCoordinator
from tests.support.coordinator import API, World, field, party_create


def _join_bank2(world: World) -> int:
    world.add_user("bank2_admin", "admin", "bank2")
    body = party_create("bank2", "bank").model_dump(mode="json")
    assert world.c.post(f"{API}/parties", json=body, headers=world.h("bank2_admin")).status_code == 200
    r = world.c.post(f"{API}/datasets", json={"name": "clients", "row_count": 100, "fields": [field("mobile")]},
                     headers=world.h("bank2_admin"))
    assert r.status_code == 200, r.text
    return int(r.json()["id"])


def _events(world: World, who: str, **params: Any) -> list[dict[str, Any]]:
    r = world.c.get(f"{API}/audit/events", params={"limit": 1000, **params}, headers=world.h(who))
    assert r.status_code == 200, r.text
    return list(r.json())


def test_a_bank_admin_sees_only_its_own_partys_audit_events(live: LiveCoordinator, live_world: World) -> None:
    world = live_world
    bank2_dataset = _join_bank2(world)
    job = world.approved_job()  # bank + telco, submitted by bank_analyst, approved by both admins
    others = {f"job:{job['id']}", f"dataset:{world.datasets['bank']}", f"dataset:{world.datasets['telco']}",
              "party:bank", "party:telco", "user:bank_admin", "user:bank_analyst", "user:telco_admin"}

    seen = _events(world, "bank2_admin")

    leaked = [e for e in seen if e["object"] in others or e["actor"] in others]
    print(f"bank2_admin sees {len(seen)} of {len(live.stored_events())} events; leaked: {len(leaked)}")
    assert leaked == []
    assert {"party:bank2", f"dataset:{bank2_dataset}", "user:bank2_admin"} <= {e["object"] for e in seen}
    assert all(e["object"] in {"party:bank2", f"dataset:{bank2_dataset}", "user:bank2_admin", "policy"}
               for e in seen)
    assert "bank_analyst" not in str(seen) and job["purpose"] not in {str(e["details"].get("purpose")) for e in seen}


def test_each_party_sees_its_jobs_and_the_auditor_sees_everything(live: LiveCoordinator, live_world: World) -> None:
    world = live_world
    _join_bank2(world)
    job = world.approved_job()
    job_events = {e["seq"] for e in live.stored_events() if e["object"] == f"job:{job['id']}"}

    for who in ("bank_admin", "telco_admin"):
        assert job_events <= {e["seq"] for e in _events(world, who)}, who
    assert len(_events(world, "auditor")) == len(live.stored_events())
    first_own = _events(world, "bank2_admin", limit=1)  # reads on past other parties' events to find its own
    assert [e["object"] for e in first_own] == ["policy"]
    later = _events(world, "bank2_admin", after_seq=first_own[0]["seq"], limit=1)
    assert later[0]["object"] == "user:bank2_admin"
    assert world.c.get(f"{API}/audit/export", headers=world.h("bank2_admin")).status_code == 403
