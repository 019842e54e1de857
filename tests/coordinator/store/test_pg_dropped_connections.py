"""PostgreSQL connections: terminated ones are not reused, and reads cost no transaction round trips.

The engine does not ping the server on every checkout (a round trip per transaction); a pooled connection
whose server end has gone (a restart, ``pg_terminate_backend``) is noticed before it is handed out, and a
connection that dies while in use fails that transaction only (SQLAlchemy invalidates the pool on a
disconnect error).
"""

from __future__ import annotations

import threading
from contextlib import ExitStack

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from coordinator.store import SqlStore, make_engine
from tests.support.coordinator import NOW, PG_URL, dataset_register, party_create, pg_store

pytestmark = pytest.mark.postgres

POOLED = 4


def _pooled_pids(store: SqlStore) -> list[int]:
    """Check out ``POOLED`` connections at once (so the pool holds that many), return their backend pids."""
    with ExitStack() as stack:
        conns = [stack.enter_context(store.engine.connect()) for _ in range(POOLED)]
        return [int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in conns]


def _terminate(pids: list[int]) -> None:
    admin: Engine = make_engine(PG_URL)
    try:
        with admin.connect() as conn:
            for pid in pids:  # the timeout makes each call wait until that backend has exited
                assert conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}).scalar_one()
            conn.commit()
    finally:
        admin.dispose()


def _write_party(store: SqlStore, name: str) -> None:
    with store.write() as tx:
        tx.catalog.upsert_party(party_create(name), NOW)


def test_every_request_after_the_backends_were_terminated_succeeds(pg_schema: str) -> None:
    store = pg_store(pg_schema)
    try:
        _write_party(store, "bank")
        old = _pooled_pids(store)
        assert len(set(old)) == POOLED
        _terminate(old)

        for i in range(POOLED + 2):  # each pooled connection is dead: none of them may be handed out
            with store.read() as tx:
                assert [p.name for p in tx.catalog.list_parties()][:1] == ["bank"]
            _write_party(store, f"party{i}")
            with store.write() as tx:
                tx.catalog.upsert_dataset("bank", dataset_register(f"d{i}"), "digest", NOW)
        assert not set(_pooled_pids(store)) & set(old)
    finally:
        store.close()


def test_concurrent_requests_after_the_backends_were_terminated_succeed(pg_schema: str) -> None:
    store = pg_store(pg_schema)
    try:
        _write_party(store, "bank")
        _terminate(_pooled_pids(store))
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                for _ in range(5):
                    with store.read() as tx:
                        tx.catalog.list_parties()
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(POOLED * 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
    finally:
        store.close()


def test_a_connection_terminated_while_in_use_fails_that_transaction_only(pg_schema: str) -> None:
    store = pg_store(pg_schema)
    try:
        _write_party(store, "bank")
        _pooled_pids(store)
        with pytest.raises(DBAPIError), store.read() as tx:  # noqa: PT012 - the block is the transaction
            session = tx.catalog._s  # type: ignore[attr-defined]  # the transaction's own session
            pid = int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
            _terminate([pid])
            tx.catalog.list_parties()
        for _ in range(POOLED + 2):
            with store.read() as tx:
                assert [p.name for p in tx.catalog.list_parties()] == ["bank"]
    finally:
        store.close()


def _transaction_status(tx: object) -> str:
    session = tx.catalog._s  # type: ignore[attr-defined]  # the transaction's own session
    return session.connection().connection.dbapi_connection.info.transaction_status.name


def test_reads_open_no_server_transaction_and_writes_do(pg_schema: str) -> None:
    """At READ COMMITTED a read runs its statements in autocommit (no BEGIN/COMMIT round trips)."""
    store = pg_store(pg_schema)
    try:
        _write_party(store, "bank")
        with store.read() as tx:
            assert [p.name for p in tx.catalog.list_parties()] == ["bank"]
            assert _transaction_status(tx) == "IDLE"
        with store.write() as tx:
            tx.catalog.list_parties()
            assert _transaction_status(tx) == "INTRANS"
        with store.read() as tx:  # the connection the write used is back in autocommit for the next read
            tx.catalog.list_parties()
            assert _transaction_status(tx) == "IDLE"
    finally:
        store.close()
