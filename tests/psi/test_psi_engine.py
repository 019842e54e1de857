import random

import psi
from protocols.wire.control import KeyType
from psi import Scalar, multiply_batch
from psi.engine import (
    ProcessPoolMapper,
    blind_file,
    hash_to_group_batch,
    iter_packed,
    load_table,
    run_local,
    save_table,
    write_packed,
)
from psi.labeled import prepare_sender_table


def test_exported_members_exist_and_are_listed():
    public = {name for name in dir(psi) if not name.startswith("_")} - {
        "annotations",
        "cardinality",
        "ecdh",
        "engine",
        "group",
        "identifiers",
        "labeled",
        "multi_key",
    }
    assert set(psi.__all__) == public
    for name in psi.__all__:
        assert getattr(getattr(psi, name), "__module__", "psi").startswith("psi")


def test_process_pool_gives_the_same_intersection_as_serial():
    rng = random.Random(5)
    values = [f"139{n:08d}" for n in rng.sample(range(10**8), 700)]
    receiver, sender = values[:500], values[200:]

    with ProcessPoolMapper(2) as mapper:
        pooled = run_local(receiver, sender, "intersection", chunk_size=300, mapper=mapper)

    assert pooled.receiver.intersection == set(receiver) & set(sender)


def test_bytes_per_element_stay_under_33_each_way():
    values = [f"137{n:08d}" for n in range(2000)]

    run = run_local(values[:1000], values[500:], "intersection", chunk_size=512)

    assert run.bytes_r2s / 1000 < 33
    assert run.bytes_s2r / (1000 + 1500) < 33


def test_blind_file_streams_and_counts_invalid(tmp_path):
    source = tmp_path / "ids.txt"
    source.write_text("13800000000\nnot-a-number\n+86 13800000001\n")
    scalar = Scalar.from_int(11)

    column = blind_file(source, tmp_path / "blinded.bin", key_type=KeyType.MOBILE, scalar=scalar, batch=2)

    expected = multiply_batch(scalar, hash_to_group_batch("mobile", ["13800000000", "13800000001"]))
    assert b"".join(iter_packed(tmp_path / "blinded.bin", chunk_elements=1)) == expected
    assert column.total == 3 and column.invalid_count == 1


def test_packed_round_trip(tmp_path):
    chunks = [bytes(range(32)) * 3, bytes(32)]

    assert write_packed(tmp_path / "p.bin", chunks) == 128
    assert list(iter_packed(tmp_path / "p.bin", chunk_elements=2)) == [chunks[0][:64], chunks[0][64:] + chunks[1]]


def test_table_save_load_round_trip(tmp_path):
    table = prepare_sender_table([("13800000000", "x")], key_type=KeyType.MOBILE, key=Scalar.from_int(8))

    save_table(table, tmp_path / "table.bin")

    assert load_table(tmp_path / "table.bin") == table
