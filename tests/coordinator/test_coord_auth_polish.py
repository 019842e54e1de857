"""Token expiry, the telco-only operator role, and the schema upgrade that added ``expires_at``."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import text

from coordinator.accounts import EXPIRED
from coordinator.store import SqlStore
from protocols.wire.control import UserCreate
from tests.support.coordinator import API, NOW, World, party_create


def _at(world: World, when) -> None:
    """Make the app's clock read ``when`` from now on."""
    app = world.c.app
    app.state.context = dataclasses.replace(app.state.context, clock=lambda: when)


def test_token_works_until_it_expires_then_is_refused_and_audited(world):
    _at(world, NOW)
    r = world.c.post(f"{API}/users", json={"name": "temp", "role": "analyst", "party": "bank", "expires_in_days": 2},
                     headers=world.h("bank_admin"))
    assert r.status_code == 201 and r.json()["expires_at"].startswith("2025-01-04T03:04:05")
    token = {"Authorization": f"Bearer {r.json()['token']}"}

    _at(world, NOW + timedelta(days=2) - timedelta(seconds=1))
    assert world.c.get(f"{API}/users/me", headers=token).status_code == 200
    _at(world, NOW + timedelta(days=2))
    refused = world.c.get(f"{API}/users/me", headers=token)

    assert refused.status_code == 401 and refused.json()["detail"][0]["message"] == EXPIRED
    assert EXPIRED == "token expired: ask your admin for a new one"
    event = world.events()[-1]
    assert (event["action"], event["details"]["reason"], event["details"]["user"]) == ("auth.failed", "token expired",
                                                                                       "temp")
    assert r.json()["token"][:6] not in str(event)


def test_tokens_expire_by_default_and_bounds_are_checked(world):
    r = world.c.post(f"{API}/users", json={"name": "plain", "role": "analyst", "party": "bank"},
                     headers=world.h("bank_admin"))
    assert r.json()["expires_at"] is not None
    bad = world.c.post(f"{API}/users", json={"name": "forever", "role": "analyst", "party": "bank",
                                            "expires_in_days": 0}, headers=world.h("bank_admin"))
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "body.expires_in_days"


def test_operator_of_a_registered_bank_is_refused_naming_field_and_fix(world):
    r = world.c.post(f"{API}/users", json={"name": "bank_op", "role": "operator", "party": "bank"},
                     headers=world.h("bank_admin"))

    assert r.status_code == 400
    detail = r.json()["detail"][0]
    assert detail["field"] == "body.role" and "'bank' is a bank" in detail["message"]
    assert "telco party" in detail["fix"]
    ok = world.c.post(f"{API}/users", json={"name": "telco_op2", "role": "operator", "party": "telco"},
                      headers=world.h("telco_admin"))
    assert ok.status_code == 201


def test_bank_cannot_register_while_an_operator_names_it(client):
    world = World(client)
    world.add_user("early_admin", "admin", "newbank")
    world.add_user("early_op", "operator", "newbank")  # party unknown yet: checked when it registers
    body = party_create("newbank", "bank").model_dump(mode="json")

    r = client.post(f"{API}/parties", json=body, headers=world.h("early_admin"))

    assert r.status_code == 400 and r.json()["detail"][0]["field"] == "body.kind"
    assert "operator" in r.json()["detail"][0]["message"]


def test_old_database_gains_the_expires_at_column(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    old = SqlStore.from_url(url)
    with old.engine.begin() as conn:
        conn.execute(text("ALTER TABLE app_user DROP COLUMN expires_at"))
    old.close()

    upgraded = SqlStore.from_url(url)
    with upgraded.write() as tx:
        user = tx.catalog.create_user(UserCreate(name="a", role="auditor", expires_in_days=1), "h" * 64, NOW)
    upgraded.close()

    assert user.expires_at == NOW + timedelta(days=1)
