"""Shared fixtures of the coordinator tests: sample wire objects, stores, and PostgreSQL isolation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from coordinator.store import MemoryStore, SqlStore, init_schema, make_engine
from protocols.messages.control import (
    DatasetRegister,
    FieldSpec,
    JobCreate,
    JobInput,
    PartyCreate,
)
from protocols.signing import SigningKey

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def party_create(name: str, kind: str = "bank", key: SigningKey | None = None) -> PartyCreate:
    signing = (key or SigningKey.generate()).public_hex
    return PartyCreate(name=name, kind=kind, signing_key=signing, sealing_key="b" * 64,
                       tls_fingerprint="c" * 64, node_url=f"https://{name}.example:8443")


def dataset_register(name: str = "customers", rows: int = 1000) -> DatasetRegister:
    return DatasetRegister(name=name, row_count=rows, fields=[
        FieldSpec(name="mobile", type="string", category="identifier", security_level=3, key_type="mobile",
                  purposes=["marketing", "recovery", "risk"]),
        FieldSpec(name="age", type="integer", category="feature", security_level=2,
                  purposes=["marketing", "risk", "propensity"]),
    ])


def job_create(*dataset_ids: int, kind: str = "audience_overlap", purpose: str = "marketing") -> JobCreate:
    return JobCreate(kind=kind, purpose=purpose, title="overlap",
                     inputs=[JobInput(dataset_id=d, key_fields=["mobile"]) for d in dataset_ids],
                     params={"output_mode": "count"})


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


def pg_store(schema: str) -> SqlStore:
    engine = make_engine(PG_URL, schema=schema)
    init_schema(engine)
    return SqlStore(engine)


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
