"""Deleting or rewriting the audit log's tail in the SQLite file, against a real coordinator process.

A raw ``DELETE``/``UPDATE`` is refused by the table's triggers. Someone who drops the triggers first
succeeds in the file, but the coordinator then refuses to start: the log no longer holds the record that
its last signed head (kept outside the database) names.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from tests.support.coordinator import World
from tests.support.live_coordinator import LiveCoordinator

TAIL = 3


@pytest.fixture
def live(tmp_path) -> Iterator[LiveCoordinator]:
    coordinator = LiveCoordinator(tmp_path / "state")
    assert coordinator.start() is None, coordinator.output()
    with coordinator.client() as client:
        World(client).populate().submit()
    yield coordinator
    coordinator.stop()


def _seqs(live: LiveCoordinator) -> list[int]:
    with sqlite3.connect(live.db) as db:
        return [seq for (seq,) in db.execute("SELECT seq FROM audit_event ORDER BY seq")]


@pytest.mark.parametrize("statement", ["DELETE FROM audit_event WHERE seq >= ?",
                                       "UPDATE audit_event SET body = '{}' WHERE seq >= ?"])
def test_raw_delete_or_update_of_audit_rows_is_refused_by_a_trigger(live, statement):
    before = _seqs(live)
    db = sqlite3.connect(live.db)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute(statement, (before[-TAIL],))
    db.close()
    assert _seqs(live) == before
    print(f"raw {statement.split()[0]} of the last {TAIL} of {len(before)} events: refused by the trigger")


def _tamper(live: LiveCoordinator, attack: str) -> list[int]:
    """Stop the coordinator, run ``attack`` on the last ``TAIL`` events as the file's owner; return the seqs."""
    live.stop()
    seqs = _seqs(live)
    with sqlite3.connect(live.db) as db:  # the owner of the file can drop the triggers first
        db.execute("DROP TRIGGER audit_event_no_delete")
        db.execute("DROP TRIGGER audit_event_no_update")
        db.execute(attack, (seqs[-TAIL],))
    return seqs


DELETE_TAIL = "DELETE FROM audit_event WHERE seq >= ?"


@pytest.mark.parametrize(("attack", "found"), [
    (DELETE_TAIL, "events were deleted from its tail"),
    ("UPDATE audit_event SET body = replace(body, '\"actor\":\"', '\"actor\":\"mallory-') WHERE seq >= ?",
     "were rewritten"),
    ("UPDATE audit_event SET body = '{not json' WHERE seq >= ?", "not valid JSON"),
])
def test_a_tampered_tail_stops_the_coordinator_from_starting(live, attack, found):
    seqs = _tamper(live, attack)

    assert live.start() == 2
    refusal = live.output()
    assert "audit log tampered" in refusal and found in refusal and f"names seq {seqs[-1]}" in refusal
    assert "audit export" in refusal and "Traceback" not in refusal
    print(f"{len(seqs)} events, last {TAIL} tampered -> restart refused:", refusal.strip().splitlines()[-1][:240])


def test_investigating_a_deleted_tail_keeps_the_evidence(live, tmp_path):
    _tamper(live, DELETE_TAIL)
    export = live.cli("audit", "export", "--out", str(tmp_path / "audit.jsonl"))  # appends audit.exported
    assert export.returncode == 0, export.stderr
    assert "audit log tampered" in export.stderr
    assert live.start() == 2 and "events were deleted from its tail" in live.output()


def test_an_untouched_log_restarts_after_cli_writes(live):
    live.stop()
    created = live.cli("user", "create", "--name", "carol", "--role", "analyst", "--party", "bank")
    assert created.returncode == 0, created.stderr
    assert live.start() is None, live.output()
