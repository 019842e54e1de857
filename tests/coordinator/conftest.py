"""Shared fixtures of the coordinator tests: sample wire objects, stores, and PostgreSQL isolation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from coordinator.app import create_app
from coordinator.store import MemoryStore, SqlStore, make_engine
from tests.support.coordinator import PG_URL, TestClient, World, app_settings, pg_store


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    admin = make_engine(PG_URL)
    name = f"tandem_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
    except Exception as exc:  # noqa: BLE001 - server missing: skip, do not pretend
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    yield name
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[MemoryStore | SqlStore]:
    """Each store implementation in turn (the contract tests run against all of them)."""
    if request.param == "memory":
        s: MemoryStore | SqlStore = MemoryStore()
    elif request.param == "sqlite":
        s = SqlStore.from_url(f"sqlite:///{tmp_path}/coord.db")
    else:
        s = pg_store(request.getfixturevalue("pg_schema"))
    yield s
    s.close()


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    """A TestClient over a fresh app on in-memory SQLite."""
    with TestClient(create_app(app_settings(tmp_path))) as c:
        yield c


@pytest.fixture
def world(client) -> World:
    """Bank and telco registered, one user per role, a dataset each."""
    return World(client).populate()
