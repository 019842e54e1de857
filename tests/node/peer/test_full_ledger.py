"""A node whose egress ledger cannot be written (its state disk is full) sends nothing and says so.

Through the real pinned mutual-TLS servers: the telco's ledger database is full (SQLite itself answers
SQLITE_FULL), so no reply of its can be recorded and none may leave. The bank's request is answered 507
with a fixed body that names the node and the fix (never a bare 500 with a traceback in the log), nothing
is added to the telco's ledger, and once its operator frees space the same exchange goes through.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from node.ledger import LedgerUnwritable
from node.peer import PeerError

JOB = 9


def test_a_node_with_a_full_ledger_answers_507_naming_the_fix_and_serves_again_once_freed(
        make_nodes: Any, caplog: pytest.LogCaptureFixture) -> None:
    bank, telco, _ = make_nodes()
    telco.inbox.register_handler("echo", lambda m: m.body.upper())
    telco.inbox.activate(JOB, peer="bank")
    ledger = telco.party.ledger
    pages = ledger._conn.execute("PRAGMA page_count").fetchone()[0]
    ledger._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full: SQLite answers SQLITE_FULL
    with pytest.raises(LedgerUnwritable):  # fill what room the last page had, to the last small record
        for _ in range(1000):
            ledger.record(peer="bank", kind="f", payload=b"")
    recorded = len(list(ledger.records()))
    caplog.set_level(logging.ERROR)

    with bank.client_to(telco) as client, pytest.raises(PeerError) as full:
        client.exchange(JOB, "echo", 1, b"hello")

    assert full.value.http_status == 507
    assert "node telco cannot write its egress ledger" in str(full.value)
    assert "free space in the node's state directory" in str(full.value)
    assert len(list(ledger.records())) == recorded  # nothing left that the ledger does not show
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]

    ledger._conn.execute("PRAGMA max_page_count = 1000000")  # the operator frees space; nothing else is done
    with bank.client_to(telco) as client:
        assert client.exchange(JOB, "echo", 1, b"hello") == b"HELLO"
    assert ledger.verify().ok and len(list(ledger.records())) > recorded
