"""Token expiry, the operator (node) role of any party, and the schema upgrade that added ``expires_at``."""

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


def test_an_operator_is_the_node_role_of_any_party(world):
    for party in ("bank", "telco"):
        r = world.c.post(f"{API}/users", json={"name": f"{party}_node", "role": "operator", "party": party},
                         headers=world.h(f"{party}_admin"))
        assert r.status_code == 201, r.text
    body = party_create("bank", "bank", world.keys["bank"]).model_dump(mode="json")
    assert world.c.post(f"{API}/parties", json=body, headers=world.h("bank_admin")).status_code == 200


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
