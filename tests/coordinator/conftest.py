"""Shared fixtures of the coordinator tests: sample wire objects, stores, and PostgreSQL isolation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from coord_helpers import BOOT, PG_URL, TestClient, World, pg_store
from sqlalchemy import text

from coordinator.app import create_app
from coordinator.settings import Settings
from coordinator.store import MemoryStore, SqlStore, make_engine


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


def app_settings(tmp_path, **overrides) -> Settings:
    values = {"database_url": "sqlite://", "signing_key_path": tmp_path / "coordinator.key", "bootstrap_token": BOOT}
    return Settings(**{**values, **overrides})


@pytest.fixture(params=["sqlite", "memory"])
def client(request: pytest.FixtureRequest, tmp_path) -> Iterator[TestClient]:
    """A TestClient over a fresh app: in-memory SQLite, or the in-memory store."""
    store = MemoryStore() if request.param == "memory" else None
    with TestClient(create_app(app_settings(tmp_path), store=store)) as c:
        yield c


@pytest.fixture
def world(client) -> World:
    """Bank and telco registered, one user per role, a dataset each."""
    return World(client).populate()
