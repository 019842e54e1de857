"""Group commit of the signed audit head: one write covers every head saved since, and nothing is skipped.

With an ``interval``, ``AuditHeads.save`` queues the head and a timer writes it; these tests use an interval
of an hour, so the timer never fires during a test, and call ``flush`` (what the timer and process exit do).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from coordinator.audit.chain import SignedHead, verify_head
from coordinator.audit.heads import AuditHeads
from coordinator.store import MemoryStore
from protocols.crypto.hashchain import ChainRecord
from protocols.crypto.signing import SigningKey


def _append(store: MemoryStore, count: int) -> list[ChainRecord]:
    with store.write() as tx:
        return [tx.audit.append({"action": "x", "i": i}, "t") for i in range(count)]


def _join_due_timers() -> None:
    """Wait for the timers already due (the ones of an hour stay pending)."""
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer) and thread.interval < 60:
            thread.join()


def _stored(path: Path, key: SigningKey) -> SignedHead:
    head = SignedHead(**json.loads(path.read_text()))
    verify_head(head, key.public_hex)
    return head


def test_heads_saved_within_an_interval_are_written_once_as_the_newest(tmp_path: Path) -> None:
    key, store = SigningKey.generate(), MemoryStore()
    heads = AuditHeads(tmp_path / "audit_heads.json", key, interval=3600)
    heads.check_tail(store)
    records = _append(store, 6)

    heads.save(records[0])  # the first head of a quiet period: its timer fires at once
    _join_due_timers()
    assert _stored(heads.path, key).seq == 0
    for rec in records[1:4]:
        heads.save(rec)
    heads.save(records[2])  # an older head saved late changes nothing
    assert _stored(heads.path, key).seq == 0  # queued, not written in the saving thread
    heads.flush()
    assert (_stored(heads.path, key).seq, _stored(heads.path, key).hash) == (3, records[3].hash)
    heads.flush()  # nothing queued: nothing rewritten
    assert _stored(heads.path, key).seq == 3


def test_without_an_interval_every_head_is_written_before_save_returns(tmp_path: Path) -> None:
    key, store = SigningKey.generate(), MemoryStore()
    heads = AuditHeads(tmp_path / "audit_heads.json", key)
    heads.check_tail(store)
    for rec in _append(store, 3):
        heads.save(rec)
        assert _stored(heads.path, key).seq == rec.seq


def test_nothing_is_saved_before_the_tail_check(tmp_path: Path) -> None:
    key, store = SigningKey.generate(), MemoryStore()
    heads = AuditHeads(tmp_path / "audit_heads.json", key, interval=3600)
    heads.save(_append(store, 1)[0])
    heads.flush()
    assert not heads.path.exists()
