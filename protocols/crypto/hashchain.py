"""Hash chains: the one implementation behind the coordinator's audit log and each node's egress ledger.

Each record is ``{"seq", "ts", "body", "prev_hash", "hash"}`` where
``hash = SHA-256(canonical_json({"seq", "ts", "body", "prev_hash"}))`` and ``prev_hash`` of the first
record is ``GENESIS``. Changing, deleting, inserting or reordering any record breaks a link, which
``verify_chain`` reports with the first bad sequence number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from protocols.wire.canonical import canonical_json, sha256_hex

__all__ = ["GENESIS", "ChainRecord", "ChainVerdict", "link_hash", "next_record", "verify_chain"]

GENESIS = "0" * 64


@dataclass(frozen=True)
class ChainRecord:
    """One link of a chain."""

    seq: int
    ts: str
    body: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, as exported (one JSON object per line)."""
        return {"seq": self.seq, "ts": self.ts, "body": self.body, "prev_hash": self.prev_hash, "hash": self.hash}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChainRecord:
        """Inverse of ``to_dict``; raises ``KeyError``/``TypeError`` on a malformed record."""
        return cls(seq=int(d["seq"]), ts=str(d["ts"]), body=dict(d["body"]), prev_hash=str(d["prev_hash"]),
                   hash=str(d["hash"]))


def link_hash(seq: int, ts: str, body: dict[str, Any], prev_hash: str) -> str:
    """Hash of one record's content and its predecessor's hash."""
    return sha256_hex(canonical_json({"seq": seq, "ts": ts, "body": body, "prev_hash": prev_hash}))


def next_record(prev: ChainRecord | None, ts: str, body: dict[str, Any]) -> ChainRecord:
    """Build the record that follows ``prev`` (or the first record when ``prev`` is None)."""
    seq = 0 if prev is None else prev.seq + 1
    prev_hash = GENESIS if prev is None else prev.hash
    return ChainRecord(seq, ts, body, prev_hash, link_hash(seq, ts, body, prev_hash))


@dataclass(frozen=True)
class ChainVerdict:
    """Outcome of ``verify_chain``: ``ok``, how many records were checked, and the first problem."""

    ok: bool
    count: int
    head_hash: str
    bad_seq: int | None = None
    reason: str = ""


def verify_chain(records: Iterable[ChainRecord], *, start_prev: str = GENESIS, start_seq: int = 0) -> ChainVerdict:
    """Walk ``records`` in order and check sequence numbers, links and hashes."""
    prev_hash, expected_seq, count = start_prev, start_seq, 0
    for rec in records:
        if rec.seq != expected_seq:
            return ChainVerdict(False, count, prev_hash, rec.seq, f"expected seq {expected_seq}, found {rec.seq}")
        if rec.prev_hash != prev_hash:
            return ChainVerdict(False, count, prev_hash, rec.seq, "prev_hash does not match the previous record")
        if link_hash(rec.seq, rec.ts, rec.body, rec.prev_hash) != rec.hash:
            return ChainVerdict(False, count, prev_hash, rec.seq, "record content does not match its hash")
        prev_hash, expected_seq, count = rec.hash, expected_seq + 1, count + 1
    return ChainVerdict(True, count, prev_hash)
