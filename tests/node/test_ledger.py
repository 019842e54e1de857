"""The egress ledger: a verifiable hash chain in node.db, tamper-evident, exportable, thread-safe."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import threading

import pytest

from node.ledger import EgressLedger, LedgerUnwritable
from protocols.crypto.hashchain import ChainRecord, verify_chain


def _fill(ledger):
    ledger.record(peer="coordinator", kind="register_dataset", payload=b'{"name":"x"}')
    ledger.record(peer="telco", kind="psi.query", payload=b"\x00" * 100, job_id=3, ref="psi/0/1of1")
    ledger.record(peer="telco", kind="psi.query", payload=b"\x01" * 50, job_id=3, ref="psi/1/1of1")
    ledger.record(peer="coordinator", kind="result", payload=b"{}", job_id=4)


def test_records_chain_and_totals(tmp_path):
    ledger = EgressLedger(tmp_path / "node.db")
    _fill(ledger)
    records = list(ledger.records())
    assert [r.seq for r in records] == [0, 1, 2, 3]
    assert records[1].body == {"peer": "telco", "job_id": 3, "kind": "psi.query", "bytes": 100,
                               "digest": hashlib.sha256(b"\x00" * 100).hexdigest(), "ref": "psi/0/1of1"}
    verdict = ledger.verify()
    assert verdict.ok and verdict.count == 4 and verdict.head_hash == ledger.head() == records[-1].hash
    totals = ledger.totals(3)
    assert (totals.messages, totals.bytes) == (2, 150)
    assert ledger.totals(99).messages == 0
    ledger.close()


def test_survives_reopen(tmp_path):
    ledger = EgressLedger(tmp_path / "node.db")
    _fill(ledger)
    ledger.close()
    again = EgressLedger(tmp_path / "node.db")
    again.record(peer="telco", kind="x", payload=b"y")
    assert again.verify().ok and again.verify().count == 5
    again.close()


def test_tampering_is_detected(tmp_path):
    ledger = EgressLedger(tmp_path / "node.db")
    _fill(ledger)
    conn = sqlite3.connect(tmp_path / "node.db")
    body = json.loads(conn.execute("SELECT body FROM egress_ledger WHERE seq = 1").fetchone()[0])
    body["bytes"] = 1
    conn.execute("UPDATE egress_ledger SET body = ? WHERE seq = 1", (json.dumps(body),))
    conn.commit()
    verdict = ledger.verify()
    assert not verdict.ok and verdict.bad_seq == 1
    conn.execute("DELETE FROM egress_ledger WHERE seq = 1")
    conn.commit()
    conn.close()
    assert ledger.verify().bad_seq == 2
    ledger.close()


def test_export_verifies_offline(tmp_path):
    ledger = EgressLedger(tmp_path / "node.db")
    _fill(ledger)
    out = tmp_path / "ledger.jsonl"
    assert ledger.export_jsonl(out) == 4
    lines = out.read_text().splitlines()
    records = [ChainRecord.from_dict(json.loads(line)) for line in lines]
    assert verify_chain(records).ok
    assert verify_chain(records).head_hash == ledger.head()
    ledger.close()


def test_concurrent_writers_keep_one_chain(tmp_path):
    ledger = EgressLedger(tmp_path / "node.db")
    other = EgressLedger(tmp_path / "node.db")  # a second connection, as a second process would have

    def write(led, n):
        for i in range(n):
            led.record(peer="telco", kind="k", payload=str(i).encode(), job_id=1)

    threads = [threading.Thread(target=write, args=(led, 40)) for led in (ledger, ledger, other, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdict = ledger.verify()
    assert verdict.ok and verdict.count == 160
    ledger.close()
    other.close()


def test_capture_keeps_each_payload_named_by_seq_and_kind_and_matching_the_digest(tmp_path):
    ledger = EgressLedger(tmp_path / "node.db", capture_dir=tmp_path / "capture")
    _fill(ledger)
    ledger.record(peer="telco", kind="train/../x y", payload=b"odd kind")
    files = sorted((tmp_path / "capture").iterdir())
    assert [f.name for f in files] == ["000000000-register_dataset.bin", "000000001-psi.query.bin",
                                       "000000002-psi.query.bin", "000000003-result.bin", "000000004-train_.._x_y.bin"]
    for record, file in zip(ledger.records(), files, strict=True):
        assert hashlib.sha256(file.read_bytes()).hexdigest() == record.body["digest"]


def test_no_capture_by_default(tmp_path):
    _fill(EgressLedger(tmp_path / "node.db"))
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


def test_a_full_database_refuses_the_record_cleanly_and_records_again_once_there_is_room(tmp_path):
    ledger = EgressLedger(tmp_path / "node.db")
    ledger.record(peer="telco", kind="psi.query", payload=b"x", job_id=1)
    pages = ledger._conn.execute("PRAGMA page_count").fetchone()[0]
    ledger._conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite itself answers SQLITE_FULL from here on
    with pytest.raises(LedgerUnwritable) as full:
        for _ in range(50):
            ledger.record(peer="telco", kind="psi.query", payload=b"y", job_id=1, ref="r" * 3000)
    assert full.value.status_hint == 507 and "free space in the node's state directory" in str(full.value)
    ledger._conn.execute("PRAGMA max_page_count = 1000000")
    ledger.record(peer="telco", kind="psi.query", payload=b"z", job_id=1)
    verdict = ledger.verify()
    assert verdict.ok and [r.body["digest"] for r in ledger.records()][-1] == hashlib.sha256(b"z").hexdigest()
    ledger.close()


def test_a_full_disk_at_commit_leaves_no_open_transaction_and_the_ledger_records_again(tmp_path):
    """A real disk full (a 1 MiB tmpfs): the WAL write fails at COMMIT and the record is refused as
    LedgerUnwritable (507, naming the fix); once the operator frees space the next record goes through."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) for a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(disk)], check=True)
    try:
        ledger = EgressLedger(disk / "node.db")
        ledger.record(peer="telco", kind="psi.query", payload=b"x", job_id=1)
        filler = disk / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        with pytest.raises(LedgerUnwritable):
            for i in range(200):
                ledger.record(peer="telco", kind="psi.query", payload=b"y", job_id=1, ref=f"{i}" * 500)
        filler.unlink()
        ledger.record(peer="telco", kind="psi.query", payload=b"z", job_id=1)
        assert ledger.verify().ok
        ledger.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
