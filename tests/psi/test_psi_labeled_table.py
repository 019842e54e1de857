"""Labeled-PSI table format: known answers for the record derivation, and the prepared table's layout.

Known answers (``tandem/psi/v2/labeled``): the OPRF value is ``k·H(x)`` for k = 0x1234567 and
x = ``11010519491231002X`` (GB 11643's worked example) as ``id_number``, through the group layer that
``test_psi_group.py`` checks against RFC 9496. The 64 derived bytes were cross-checked with OpenSSL
3.0 (``openssl mac -macopt hexkey:<hex of KDF_KEY> -macopt size:64 BLAKE2BMAC`` over the 32-byte
value); the record is recomputed here with pycryptodome's AES-GCM, an implementation independent of
the ``cryptography`` (OpenSSL) one that seals it.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from Crypto.Cipher import AES

from protocols.wire.control import KeyType
from psi import Scalar, _ristretto
from psi.engine import ProcessPoolMapper
from psi.group import hash_to_group
from psi.labeled import (
    KDF_KEY,
    TAG_BYTES,
    LabeledPsiReceiver,
    _candidate_offsets,
    _derive,
    _sorted_records,
    _tag_heads,
    prepare_sender_table,
    seal_batch,
)

K = Scalar.from_int(0x1234567)
X = "11010519491231002X"
OPRF = "d43dd15a87c7741aab02ba0a6ad3f9ed81c4d114971efa2bab05e00fa7f2467e"
OKM = (
    "3d03fa55e447d5b603c7f12ef861595114c01258164c4adec4547c1bd499966e"
    "5ab6de23947277a40704f70abe3920a154e50dc6287c168f343abeee002d2b27"
)
RECORD = (
    "3d03fa55e447d5b603c7f12ef86159517d65ffc313e3d365e9f631bb4fcdd8e1"
    "f36ab85c3c256bcbbd10212863d4b5dabf3bc7a26f6d976358d0d33619b199c0"
)


def test_kdf_key_names_v2():
    assert KDF_KEY == b"tandem/psi/v2/labeled"


def test_oprf_value_known_answer():
    assert _ristretto.scalarmult(K.to_bytes(), hash_to_group("id_number", X)).hex() == OPRF


def test_derivation_known_answer():
    okm = bytes.fromhex(OKM)

    assert hashlib.blake2b(bytes.fromhex(OPRF), digest_size=64, key=KDF_KEY).hexdigest() == OKM
    assert _derive(bytes.fromhex(OPRF)) == (okm[:16], okm[16:48], okm[48:60])


def test_record_known_answer_and_independent_aes_gcm():
    okm = bytes.fromhex(OKM)
    cipher = AES.new(okm[16:48], AES.MODE_GCM, nonce=okm[48:60])
    cipher.update(okm[:16])
    sealed, gcm_tag = cipher.encrypt_and_digest((b"\x0b" + b"13812345678").ljust(32, b"\x00"))

    record = seal_batch("id_number", [X], ["13812345678"], K, 32)

    assert record.hex() == RECORD
    assert record == okm[:16] + sealed + gcm_tag
    assert seal_batch("id_number", [X], [["13812345678"]], K, 32) == record  # a one-label sequence is the same


def _slow_table(records, key):
    """The table as the reference: group with sets, seal one batch, ``sorted()`` of the record slices."""
    groups: dict[str, set[str]] = {}
    for k, label in records:
        groups.setdefault(k, set()).add(label)
    keys = sorted(groups)
    labels = [sorted(groups[k]) for k in keys]
    longest = max((sum(1 + len(lab.encode()) for lab in group) + 1 for group in labels), default=0)
    size = max(32, -(-longest // 16) * 16)
    packed = seal_batch("mobile", keys, labels, key, size)
    record_size = 16 + size + 16
    return record_size, b"".join(sorted(packed[i : i + record_size] for i in range(0, len(packed), record_size)))


def _records(seed: int, count: int, duplicates: bool) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = [(f"139{rng.randrange(10**8):08d}", f"label-{rng.randrange(10**6)}") for _ in range(count)]
    if duplicates:
        out += [(k, rng.choice([lab, lab + "-b", "第二个号码"])) for k, lab in rng.sample(out, count // 4)]
        rng.shuffle(out)
    return out


@pytest.mark.parametrize("duplicates", [False, True])
def test_prepared_table_equals_reference(duplicates):
    records = _records(3, 400, duplicates)

    table = prepare_sender_table(iter(records), key_type=KeyType.MOBILE, key=K, batch=37)

    assert (table.record_size, table.records) == _slow_table(records, K)


def test_prepared_table_through_a_process_pool_equals_serial():
    records = _records(4, 300, True)

    with ProcessPoolMapper(2) as mapper:
        pooled = prepare_sender_table(records, key_type=KeyType.MOBILE, key=K, mapper=mapper, batch=50)

    assert pooled == prepare_sender_table(records, key_type=KeyType.MOBILE, key=K)


def test_records_are_sorted_by_tag_and_labels_open():
    records = _records(5, 200, True)
    table = prepare_sender_table(records, key_type=KeyType.MOBILE, key=K)
    rows = [table.records[i : i + table.record_size] for i in range(0, len(table.records), table.record_size)]

    assert [r[:TAG_BYTES] for r in rows] == sorted(r[:TAG_BYTES] for r in rows)
    assert len({r[:TAG_BYTES] for r in rows}) == table.count == len({k for k, _ in records})
    key, labels = records[0][0], sorted({lab for k, lab in records if k == records[0][0]})
    tag, enc_key, nonce = _derive(_ristretto.scalarmult(K.to_bytes(), hash_to_group("mobile", key)))
    record = next(r for r in rows if r[:TAG_BYTES] == tag)
    assert LabeledPsiReceiver._open(record, enc_key, nonce) == tuple(labels)


def test_long_and_non_ascii_labels_size_the_plaintext():
    records = [("13800000000", "é" * 40), ("13800000001", "x"), ("13800000000", "y")]

    table = prepare_sender_table(records, key_type=KeyType.MOBILE, key=K)

    assert table.record_size == 16 + 96 + 16  # 1 + 80 + 1 + 1 + 1 = 84 bytes, rounded up to 96
    assert (table.record_size, table.records) == _slow_table(records, K)


def test_empty_table():
    table = prepare_sender_table([], key_type=KeyType.MOBILE, key=K)

    assert table.count == 0 and table.records == b"" and table.record_size == 64


def test_sort_is_bytewise_like_sorted_even_for_equal_prefixes():
    rng = random.Random(6)
    prefix = bytes(rng.randrange(256) for _ in range(16))
    rows = [prefix + bytes(rng.choice([0, 1, 0x7F, 0x80, 0xFF]) for _ in range(32)) for _ in range(300)]
    rows += [bytes(rng.randrange(256) for _ in range(48)) for _ in range(300)]
    packed = b"".join(rows)

    got = _sorted_records([packed[:4800], packed[4800:]], 48, len(rows))

    assert got == b"".join(sorted(rows))


@pytest.mark.parametrize("size", [48, 49, 64])
def test_prefilter_finds_every_record_whose_tag_is_wanted(size):
    rng = random.Random(size)
    rows = [bytes(rng.randrange(256) for _ in range(size)) for _ in range(500)]
    wanted = [rows[i][:TAG_BYTES] for i in rng.sample(range(500), 40)]
    wanted += [bytes(rng.randrange(256) for _ in range(TAG_BYTES)) for _ in range(40)]  # not in the table
    rows[7] = wanted[0][:8] + bytes(8) + rows[7][16:]  # same first 8 bytes as a wanted tag, other tag
    body = b"".join(rows)

    offsets = _candidate_offsets(body, size, _tag_heads(wanted))

    hits = [i * size for i, row in enumerate(rows) if row[:TAG_BYTES] in set(wanted)]
    assert set(hits) <= set(offsets) and 7 * size in offsets
    assert _candidate_offsets(body, size, _tag_heads([])) == []
    assert _candidate_offsets(b"", size, _tag_heads(wanted)) == []
