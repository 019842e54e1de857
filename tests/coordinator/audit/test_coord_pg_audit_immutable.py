"""On PostgreSQL the audit table itself refuses UPDATE, DELETE and TRUNCATE (a trigger, not app code)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.support.coordinator import pg_store

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("statement", [
    "UPDATE audit_event SET ts = 'forged' WHERE seq = 0",
    "DELETE FROM audit_event WHERE seq = 1",
    "TRUNCATE audit_event",
])
def test_audit_rows_cannot_be_changed(pg_schema, statement):
    store = pg_store(pg_schema)
    for i in range(2):
        with store.write() as tx:
            tx.audit.append({"action": "x", "i": i}, "t")

    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))

    with store.read() as tx:
        records = tx.audit.events()
    assert [(r.seq, r.ts) for r in records] == [(0, "t"), (1, "t")]
    store.close()
