"""The signed-head check over each SQL backend: a tail deleted behind the triggers' back is found.

The live-process tests (``tests/coordinator/audit/test_tail_deletion.py``) attack SQLite through a real
coordinator; these run the same check over SQLite and PostgreSQL stores, and cover a forged heads file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from coordinator.audit.heads import AuditHeads
from coordinator.store import SqlStore, init_schema, make_engine
from protocols.crypto.signing import SigningKey
from protocols.wire.errors import ConfigError
from tests.support.coordinator import PG_URL

DISABLE = {"sqlite": ["DROP TRIGGER audit_event_no_delete"],
           "postgresql": ["ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_change"]}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine_url(request, tmp_path) -> Iterator[tuple[str, str | None]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/coord.db", None
    else:
        yield PG_URL, request.getfixturevalue("pg_schema")


def _store(url: str, schema: str | None, heads: AuditHeads) -> SqlStore:
    engine = make_engine(url, schema=schema)
    init_schema(engine)
    return SqlStore(engine, on_audit_commit=heads.save)


def _append(store: SqlStore, count: int) -> None:
    for i in range(count):
        with store.write() as tx:
            tx.audit.append({"action": "x", "i": i}, "t")


def test_a_tail_deleted_behind_the_trigger_is_found(engine_url, tmp_path):
    url, schema = engine_url
    key = SigningKey.generate()
    heads = AuditHeads(tmp_path / "audit_heads.json", key)
    store = _store(url, schema, heads)
    assert heads.check_tail(store) is False  # empty log, no file: nothing to check, saving starts
    _append(store, 5)
    with store.engine.begin() as conn:
        for statement in DISABLE[store.engine.dialect.name]:
            conn.execute(text(statement))
        conn.execute(text("DELETE FROM audit_event WHERE seq >= 3"))
    store.close()

    restarted = AuditHeads(heads.path, key)
    with pytest.raises(ConfigError, match="names seq 4 .* ends at seq 2: events were deleted from its tail"):
        restarted.check_tail(_store(url, schema, restarted))


def test_a_forged_or_foreign_heads_file_is_refused(tmp_path):
    key = SigningKey.generate()
    heads = AuditHeads(tmp_path / "audit_heads.json", key)
    store = _store(f"sqlite:///{tmp_path}/coord.db", None, heads)
    heads.check_tail(store)
    _append(store, 3)
    saved = json.loads(heads.path.read_text())
    heads.path.write_text(json.dumps({**saved, "seq": 1}))  # point the head back before the tail
    with pytest.raises(ConfigError, match="not signed by this coordinator's audit key"):
        AuditHeads(heads.path, key).check_tail(store)
    heads.path.write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="not signed by this coordinator's audit key"):
        AuditHeads(heads.path, SigningKey.generate()).check_tail(store)  # the key file was replaced
    assert AuditHeads(heads.path, key).check_tail(store) is False


def test_no_heads_file_over_a_non_empty_log_is_reported(tmp_path, caplog):
    key = SigningKey.generate()
    heads = AuditHeads(tmp_path / "audit_heads.json", key)
    store = _store(f"sqlite:///{tmp_path}/coord.db", None, heads)
    _append(store, 2)  # before check_tail: nothing saved (a process that has not checked writes no heads)
    assert not heads.path.exists()
    assert heads.check_tail(store) is True and "no signed audit head" in caplog.text
    _append(store, 1)
    assert json.loads(heads.path.read_text())["seq"] == 2
