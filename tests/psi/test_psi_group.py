import json
from pathlib import Path

import pytest

from psi import InvalidPoint, Scalar, _ristretto, hash_to_group, hash_to_group_batch, multiply, multiply_batch

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "ristretto255.json").read_text())
MULTIPLES = VECTORS["generator_multiples"]["encodings"]
INVALID = VECTORS["invalid_encodings"]["encodings"]
ONE_WAY = VECTORS["one_way_map"]["vectors"] + VECTORS.get("one_way_map_edge_cases", {}).get("vectors", [])


def test_vectors_record_their_source():
    assert "RFC 9496" in VECTORS["source"] and VECTORS["checked"]


@pytest.mark.parametrize("k", range(1, 16))
def test_rfc9496_a1_generator_multiples(k):
    assert _ristretto.scalarmult_base(k.to_bytes(32, "little")).hex() == MULTIPLES[k]


@pytest.mark.parametrize("k", range(2, 16))
def test_rfc9496_a1_multiples_through_safe_multiply(k):
    generator = bytes.fromhex(MULTIPLES[1])

    assert multiply(Scalar.from_int(k), generator).hex() == MULTIPLES[k]


def test_identity_encoding_is_refused():
    with pytest.raises(InvalidPoint):
        multiply(Scalar.from_int(3), bytes.fromhex(MULTIPLES[0]))


@pytest.mark.parametrize("encoding", INVALID)
def test_rfc9496_a2_invalid_encodings_rejected(encoding):
    assert not _ristretto.is_valid_point(bytes.fromhex(encoding))
    with pytest.raises(InvalidPoint):
        multiply(Scalar.from_int(7), bytes.fromhex(encoding))


@pytest.mark.parametrize("vector", ONE_WAY, ids=lambda v: v["input"][:12])
def test_rfc9496_a3_one_way_map(vector):
    assert _ristretto.from_uniform(bytes.fromhex(vector["input"])).hex() == vector["output"]


def test_multiply_batch_names_the_first_bad_element():
    good = hash_to_group_batch("mobile", ["13800000000", "13800000001", "13800000002"])
    bad = good[:32] + bytes.fromhex(INVALID[6]) + good[64:]

    with pytest.raises(InvalidPoint) as info:
        multiply_batch(Scalar.from_int(5), bad)
    assert info.value.index == 1


def test_multiply_batch_rejects_truncated_input():
    with pytest.raises(InvalidPoint):
        multiply_batch(Scalar.from_int(5), hash_to_group("mobile", "13800000000")[:31])


def test_hash_to_group_is_deterministic_and_separates_key_types():
    assert hash_to_group("mobile", "13800000000") == hash_to_group("mobile", "13800000000")
    assert hash_to_group("mobile", "13800000000") != hash_to_group("customer_id", "13800000000")
    assert hash_to_group_batch("mobile", ["a", "b"]) == hash_to_group("mobile", "a") + hash_to_group("mobile", "b")


def test_blinding_commutes_and_inverts():
    a, b = Scalar.random(), Scalar.random()
    point = hash_to_group("imei", "49015420323751")

    assert multiply(a, multiply(b, point)) == multiply(b, multiply(a, point))
    assert multiply(a.invert(), multiply(a, point)) == point


def test_scalar_refuses_zero_and_noncanonical_and_hides_its_value():
    with pytest.raises(ValueError):
        Scalar(bytes(32))
    with pytest.raises(ValueError):
        Scalar(b"\xff" * 32)
    assert "secret" in repr(Scalar.random())
