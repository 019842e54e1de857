"""The sender's table store: cache names (``records_digest``), reuse within an epoch, rotation."""

from __future__ import annotations

import hashlib

import pytest

from node.jobs.psi import tables
from node.jobs.psi.tables import TableStore, records_digest
from protocols.wire.control import KeyType
from psi.labeled import KDF_KEY, SharedKeys

RECORDS = [("13800000000", "13912345678"), ("13800000001", "号码"), ("13800000002", "x")]


def per_record_digest(key_type: KeyType, records) -> str:
    h = hashlib.sha256(KDF_KEY + b"\n" + f"{key_type.value}\n".encode())
    for key, label in records:
        h.update(f"{key}\t{label}\n".encode())
    return h.hexdigest()


@pytest.mark.parametrize("block", [1, 2, 3, 65536])
def test_digest_is_the_per_record_definition_for_any_blocking(monkeypatch, block):
    monkeypatch.setattr(tables, "_DIGEST_BLOCK", block)

    assert records_digest(KeyType.MOBILE, RECORDS) == per_record_digest(KeyType.MOBILE, RECORDS)


def test_digest_separates_key_type_order_and_format():
    base = records_digest(KeyType.MOBILE, RECORDS)

    assert records_digest(KeyType.IMEI, RECORDS) != base
    assert records_digest(KeyType.MOBILE, RECORDS[::-1]) != base
    assert records_digest(KeyType.MOBILE, []) == hashlib.sha256(KDF_KEY + b"\nmobile\n").hexdigest()
    v1 = hashlib.sha256(b"mobile\n" + b"".join(f"{k}\t{lab}\n".encode() for k, lab in RECORDS)).hexdigest()
    assert base != v1  # a table of the v1 format is never found under a v2 name


def test_table_is_built_once_per_epoch_and_reused(tmp_path):
    store = TableStore(tmp_path / "psi")

    first = store.table(KeyType.MOBILE, RECORDS)
    again = store.table(KeyType.MOBILE, list(RECORDS))

    assert not first.reused and again.reused
    assert again.table == first.table and again.key == first.key
    store.rotate()
    fresh = store.table(KeyType.MOBILE, RECORDS)
    assert not fresh.reused and fresh.table.key_id != first.table.key_id


def test_shared_key_values_are_left_out_and_counted_whether_built_or_reused(tmp_path):
    store = TableStore(tmp_path / "psi")
    shared = [("86981203777123", f"199{i:08d}") for i in range(50)]
    records = [*RECORDS, *shared]

    first = store.table(KeyType.IMEI, records)
    again = store.table(KeyType.IMEI, records)

    assert not first.reused and again.reused
    assert first.shared == again.shared == SharedKeys(values=1, records=50)
    assert first.table.count == len(RECORDS)
    assert first.table == store.table(KeyType.IMEI, RECORDS).table  # the same table as without the shared value
