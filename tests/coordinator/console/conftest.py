"""Shared parts of the console tests: a world whose jobs need the auditor, and browser-session cookies."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator.accounts import hash_token
from coordinator.api.web_sessions import COOKIE
from tests.support.coordinator import World, field


def add_id_datasets(world: World) -> None:
    """A telco dataset keyed by id_number (level 4): an overlap on id_number needs the auditor (R10)."""
    msisdn = world.datasets["telco"]
    world.register("telco", "subscribers_by_id", [field("id_number", level=4, key_type="id_number"),
                                                  field("arpu", "feature", 2, None)])
    world.datasets["telco_id"], world.datasets["telco"] = world.datasets["telco"], msisdn


def submit_auditor_job(world: World, title: str = "overlap on id numbers") -> dict[str, Any]:
    """A job pending approval whose required approvals include ``auditor``."""
    body = world.job_body(bank_key="id_number", telco_key="id_number") | {"title": title}
    body["inputs"][1]["dataset_id"] = world.datasets["telco_id"]
    r = world.c.post("/api/v1/jobs", json=body, headers=world.h("bank_analyst"))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "pending_approval" and "auditor" in job["required_approvals"], job
    return job


def session_cookie(world: World, who: str) -> dict[str, str]:
    """A Cookie header of a browser session opened for ``who`` directly (login admits auditors only)."""
    app = world.c.app
    session = app.state.web_sessions.open(hash_token(world.tokens[who]), who, app.state.context.clock())
    return {"Cookie": f"{COOKIE}={session}"}


@pytest.fixture
def id_world(world: World) -> World:
    """The coordinator tests' world plus the id_number dataset of the telco."""
    add_id_datasets(world)
    return world
