"""The egress ledger: a hash chain of every message that left this node (DESIGN.md §5).

Each record's body is ``{"peer", "job_id", "kind", "bytes", "digest", "ref"}``: who received it
(``"coordinator"`` or a party name), the job it belongs to (``None`` for catalog work), what it was,
its size and the SHA-256 of the exact bytes sent, and an optional reference (e.g. channel/seq/chunk);
plus ``"attempt"`` for a message of a known attempt of its job (a retried job runs as attempts 1, 2, ...),
so the coordinator's cross-check matches it to that attempt.
Never the content. Records use ``protocols.crypto.hashchain``, the same format as the coordinator's audit
log, so compliance verifies both with one tool and can cross-check sizes and digests.

Writers serialise on a lock within the process and on SQLite's ``BEGIN IMMEDIATE`` across
processes, so a ``serve`` process and a ``run-once`` process can share one ledger.

Payload capture (``capture_dir``, setting ``egress_capture_dir``): additionally keep a copy of every
recorded payload as ``<capture_dir>/<seq>-<kind>.bin``. The copies hold exactly what the receivers got,
so they add nothing a peer does not already have; they exist so that a reviewer (and the wire-capture
tests) can search everything a node sent. Off by default: the ledger itself keeps digests only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.node_db import connect
from protocols.crypto.hashchain import ChainRecord, ChainVerdict, next_record, verify_chain
from protocols.wire.errors import ProtocolError

__all__ = ["COORDINATOR_PEER", "EgressLedger", "LedgerTotals", "LedgerUnwritable"]

COORDINATOR_PEER = "coordinator"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS egress_ledger (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    job_id INTEGER,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
)
"""


_UNWRITABLE = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN}


class LedgerUnwritable(ProtocolError):
    """The ledger cannot record a message (its disk is full, read-only or failing): the message must not leave.

    507 Insufficient Storage: the node's peer server answers a request whose reply it cannot record with
    this status and a fixed body naming the fix, the one reply not in the ledger (it carries no data).
    """

    status_hint = 507


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class LedgerTotals:
    """How many messages and bytes a job sent."""

    messages: int
    bytes: int


class EgressLedger:
    """Append-only, hash-chained record of outgoing messages in ``node.db``."""

    def __init__(self, db_path: Path, *, clock: Callable[[], str] = _utc_now, capture_dir: Path | None = None) -> None:
        """Open (creating if needed) the ledger table in ``db_path``; ``capture_dir``: see the module docstring."""
        self._capture = capture_dir
        if capture_dir is not None:
            capture_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._conn = connect(db_path)
        self._conn.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._clock = clock

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def record(self, *, peer: str, kind: str, payload: bytes, job_id: int | None = None, ref: str = "",
               attempt: int | None = None) -> ChainRecord:
        """Append a record for ``payload``, about to leave (or having left) for ``peer``.

        Record *before* sending when possible: a ledger that over-counts a failed send is honest, one
        that misses a sent message is not.
        """
        body: dict[str, Any] = {
            "peer": peer,
            "job_id": job_id,
            "kind": kind,
            "bytes": len(payload),
            "digest": hashlib.sha256(payload).hexdigest(),
            "ref": ref,
        }
        if attempt is not None and job_id is not None:
            body["attempt"] = attempt
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                rec = next_record(self._last(), self._clock(), body)
                self._conn.execute(
                    "INSERT INTO egress_ledger (seq, ts, job_id, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)",
                    (rec.seq, rec.ts, job_id, json.dumps(rec.body, sort_keys=True), rec.prev_hash, rec.hash),
                )
                self._conn.execute("COMMIT")  # inside the try: a COMMIT that fails (disk full) is handled below
            except BaseException as exc:
                if self._conn.in_transaction:  # SQLite's advice after SQLITE_FULL/IOERR: roll back explicitly
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode & 0xFF in _UNWRITABLE:
                    raise LedgerUnwritable(
                        f"this node cannot record a message in its egress ledger ({exc}), so the message was not "
                        "sent; free space in the node's state directory (or make it writable) and retry") from exc
                raise
            if self._capture is not None:
                safe_kind = "".join(c if c.isalnum() or c in "._-" else "_" for c in kind)[:60]
                (self._capture / f"{rec.seq:09d}-{safe_kind}.bin").write_bytes(payload)
        return rec

    def _last(self) -> ChainRecord | None:
        row = self._conn.execute(
            "SELECT seq, ts, body, prev_hash, hash FROM egress_ledger ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return None if row is None else _to_record(row)

    def records(self) -> Iterator[ChainRecord]:
        """All records in sequence order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, ts, body, prev_hash, hash FROM egress_ledger ORDER BY seq"
            ).fetchall()
        return (_to_record(r) for r in rows)

    def verify(self) -> ChainVerdict:
        """Check every link of the chain."""
        return verify_chain(self.records())

    def head(self) -> str | None:
        """Hash of the last record, or None for an empty ledger."""
        with self._lock:
            last = self._last()
        return None if last is None else last.hash

    def totals(self, job_id: int) -> LedgerTotals:
        """Messages and bytes this node sent for ``job_id``."""
        with self._lock:
            rows = self._conn.execute("SELECT body FROM egress_ledger WHERE job_id = ?", (job_id,)).fetchall()
        return LedgerTotals(messages=len(rows), bytes=sum(int(json.loads(r[0])["bytes"]) for r in rows))

    def receipts(self, job_id: int, *, limit: int = -1) -> tuple[str | None, LedgerTotals, list[ChainRecord]]:
        """The head, and ``job_id``'s totals and first ``limit`` records up to that head, read at one instant.

        One read under the lock, bounded by the head's seq: a record the node's server appends for the
        job meanwhile (an answer to the peer) is neither in the totals nor under the head, so the two agree.
        """
        with self._lock:
            last = self._last()
            if last is None:
                return None, LedgerTotals(0, 0), []
            rows = self._conn.execute(
                "SELECT seq, ts, body, prev_hash, hash FROM egress_ledger WHERE job_id = ? AND seq <= ? ORDER BY seq",
                (job_id, last.seq),
            ).fetchall()
        records = [_to_record(r) for r in rows]
        totals = LedgerTotals(messages=len(records), bytes=sum(int(r.body["bytes"]) for r in records))
        return last.hash, totals, records if limit < 0 else records[:limit]

    def job_records(self, job_id: int, *, limit: int = -1) -> list[ChainRecord]:
        """Records of ``job_id`` in sequence order, at most ``limit`` of them (all when negative)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, ts, body, prev_hash, hash FROM egress_ledger WHERE job_id = ? ORDER BY seq LIMIT ?",
                (job_id, limit),
            ).fetchall()
        return [_to_record(r) for r in rows]

    def export_jsonl(self, path: Path) -> int:
        """Write every record as one JSON object per line (``ChainRecord.to_dict``); return the count."""
        count = 0
        with path.open("w", encoding="utf-8") as fh:
            for rec in self.records():
                fh.write(json.dumps(rec.to_dict(), sort_keys=True) + "\n")
                count += 1
        return count


def _to_record(row: tuple[Any, ...]) -> ChainRecord:
    seq, ts, body, prev_hash, hash_ = row
    return ChainRecord(seq=int(seq), ts=str(ts), body=json.loads(body), prev_hash=str(prev_hash), hash=str(hash_))
