"""Wire codec of EncryptedVector: round trip, exact sizes, and rejection of malformed input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.crypto.paillier import generate_keypair
from protocols.crypto.paillier.codec import MAGIC, decode_vector, encode_vector, encoded_size
from protocols.wire.errors import RemoteProtocolError


def _ct_offset(public_key, index):
    return encoded_size(public_key, 0) + index * 2 * ((public_key.n.bit_length() + 7) // 8)


def _replace_ct(data, public_key, index, value):
    width = 2 * ((public_key.n.bit_length() + 7) // 8)
    start = _ct_offset(public_key, index)
    return data[:start] + value.to_bytes(width, "big") + data[start + width :]


@settings(max_examples=20, deadline=None)
@given(values=st.lists(st.integers(-(2**50), 2**50), max_size=10), exponent=st.integers(-20, 5))
def test_round_trip(keys, values, exponent):
    # Prepare
    encryptor, decryptor = keys
    v = encryptor.encrypt_vector(np.array(values, dtype=np.int64) * 16**5, exponent=exponent)

    # Execute
    data = encode_vector(v)
    w = decode_vector(data, encryptor.public_key)

    # Assert
    assert len(data) == encoded_size(encryptor.public_key, len(values))
    assert w.ciphertexts == v.ciphertexts and w.exponent == v.exponent
    assert decryptor.decrypt_mantissas(w) == decryptor.decrypt_mantissas(v)


def test_layout_is_fixed_width_big_endian(keys):
    encryptor, _ = keys
    v = encryptor.encrypt_vector(np.array([1, 2]))
    data = encode_vector(v)
    k = 64  # 512-bit modulus
    assert data[:4] == MAGIC
    assert int.from_bytes(data[4:6], "big") == k
    assert int.from_bytes(data[6 : 6 + k], "big") == encryptor.public_key.n
    assert int.from_bytes(data[6 + k + 4 : 6 + k + 8], "big") == 2
    assert int.from_bytes(data[-2 * k :], "big") == v.ciphertexts[1]
    assert len(data) == 6 + k + 8 + 2 * 2 * k


@pytest.mark.parametrize("cut", [1, 5, 64, 200])
def test_truncated_rejected(keys, cut):
    encryptor, _ = keys
    data = encode_vector(encryptor.encrypt_vector(np.arange(3)))
    with pytest.raises(RemoteProtocolError):
        decode_vector(data[:-cut], encryptor.public_key)


def test_trailing_bytes_rejected(keys):
    encryptor, _ = keys
    data = encode_vector(encryptor.encrypt_vector(np.arange(3)))
    with pytest.raises(RemoteProtocolError):
        decode_vector(data + b"\0", encryptor.public_key)


def test_other_key_and_bad_magic_rejected(keys):
    encryptor, _ = keys
    other_pub, _ = generate_keypair(512, allow_insecure_test_key=True)
    data = encode_vector(encryptor.encrypt_vector(np.arange(3)))
    with pytest.raises(RemoteProtocolError):
        decode_vector(data, other_pub)
    with pytest.raises(RemoteProtocolError):
        decode_vector(b"XXXX" + data[4:], encryptor.public_key)


@pytest.mark.parametrize("which", ["zero", "nsquare", "max", "multiple_of_p"])
def test_out_of_range_or_non_unit_ciphertext_rejected(keys, which):
    # Prepare
    encryptor, decryptor = keys
    n = encryptor.public_key.n
    p = int(decryptor._key.p)
    bad = {"zero": 0, "nsquare": n * n, "max": 2 ** (2 * 8 * 64) - 1, "multiple_of_p": p * 12345}[which]
    data = _replace_ct(encode_vector(encryptor.encrypt_vector(np.arange(3))), encryptor.public_key, 1, bad)

    # Execute / Assert
    with pytest.raises(RemoteProtocolError, match="^invalid encrypted vector$"):
        decode_vector(data, encryptor.public_key)


def test_max_count_enforced(keys):
    encryptor, _ = keys
    data = encode_vector(encryptor.encrypt_vector(np.arange(3)))
    assert len(decode_vector(data, encryptor.public_key, max_count=3)) == 3
    with pytest.raises(RemoteProtocolError):
        decode_vector(data, encryptor.public_key, max_count=2)


def test_empty_vector_round_trip(keys):
    encryptor, _ = keys
    v = encryptor.encrypt_vector(np.array([], dtype=np.int64), exponent=-3)
    w = decode_vector(encode_vector(v), encryptor.public_key)
    assert len(w) == 0 and w.exponent == -3


def test_lying_count_rejected(keys):
    encryptor, _ = keys
    data = bytearray(encode_vector(encryptor.encrypt_vector(np.arange(3))))
    data[6 + 64 + 4 : 6 + 64 + 8] = (2**32 - 1).to_bytes(4, "big")
    with pytest.raises(RemoteProtocolError):
        decode_vector(bytes(data), encryptor.public_key)
