"""Property tests: homomorphic operations on EncryptedVector match numpy (512-bit test key)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from protocols.crypto.paillier import Decryptor, EncryptedVector, Encryptor, generate_keypair
from protocols.wire.errors import CryptoError, LocalProtocolError

SETTINGS = settings(max_examples=25, deadline=None)
FLOATS = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
INTS = st.integers(min_value=-(2**40), max_value=2**40)


@pytest.fixture(scope="module")
def keys():
    public_key, private_key = generate_keypair(512, allow_insecure_test_key=True)
    encryptor = Encryptor(public_key, allow_insecure_test_key=True)
    decryptor = Decryptor(private_key, allow_insecure_test_key=True)
    return encryptor, decryptor


def float_arrays(min_size=1, max_size=12):
    return hnp.arrays(np.float64, st.integers(min_size, max_size), elements=FLOATS)


def close(a, b, scale=1.0):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9 * scale)


@SETTINGS
@given(x=float_arrays())
def test_round_trip_floats(keys, x):
    encryptor, decryptor = keys
    close(decryptor.decrypt_vector(encryptor.encrypt_vector(x)), x)


@SETTINGS
@given(x=st.lists(INTS, min_size=1, max_size=12))
def test_round_trip_ints_exact(keys, x):
    encryptor, decryptor = keys
    v = encryptor.encrypt_vector(np.array(x, dtype=np.int64))
    assert decryptor.decrypt_mantissas(v) == x
    assert v.exponent == 0


@SETTINGS
@given(data=st.data(), size=st.integers(1, 10))
def test_add_encrypted_and_plain(keys, data, size):
    encryptor, decryptor = keys
    x, y, z = (data.draw(hnp.arrays(np.float64, size, elements=FLOATS)) for _ in range(3))
    result = encryptor.encrypt_vector(x) + encryptor.encrypt_vector(y) + z
    close(decryptor.decrypt_vector(result), x + y + z, scale=3)


@SETTINGS
@given(data=st.data(), size=st.integers(1, 10), e1=st.integers(-13, 0), e2=st.integers(-13, 0))
def test_add_aligns_different_exponents(keys, data, size, e1, e2):
    encryptor, decryptor = keys
    x, y = (data.draw(hnp.arrays(np.int64, size, elements=INTS)) for _ in range(2))
    result = encryptor.encrypt_vector(x, exponent=e1) + encryptor.encrypt_vector(y, exponent=e2)
    assert result.exponent == min(e1, e2)
    np.testing.assert_array_equal(decryptor.decrypt_vector(result), (x + y).astype(np.float64))


@SETTINGS
@given(data=st.data(), size=st.integers(1, 10))
def test_sub_and_neg(keys, data, size):
    encryptor, decryptor = keys
    x, y = (data.draw(hnp.arrays(np.int64, size, elements=INTS)) for _ in range(2))
    ex, ey = encryptor.encrypt_vector(x), encryptor.encrypt_vector(y)
    assert decryptor.decrypt_mantissas(ex - ey) == list(x - y)
    assert decryptor.decrypt_mantissas(-ex) == list(-x)
    assert decryptor.decrypt_mantissas(ex - y) == list(x - y)
    assert decryptor.decrypt_mantissas(y - ex) == list(y - x)


@SETTINGS
@given(data=st.data(), size=st.integers(1, 10))
def test_scalar_multiply_by_plain_vector(keys, data, size):
    encryptor, decryptor = keys
    x, k = (data.draw(hnp.arrays(np.float64, size, elements=FLOATS)) for _ in range(2))
    result = encryptor.encrypt_vector(x) * k
    close(decryptor.decrypt_vector(result), x * k, scale=1e6)


@SETTINGS
@given(x=st.lists(INTS, min_size=1, max_size=10), k=INTS)
def test_scalar_multiply_ints_exact(keys, x, k):
    encryptor, decryptor = keys
    result = k * encryptor.encrypt_vector(np.array(x, dtype=np.int64))
    assert decryptor.decrypt_mantissas(result) == [k * a for a in x]


@SETTINGS
@given(data=st.data(), rows=st.integers(1, 30), cols=st.integers(1, 3))
def test_dot_with_plain_matrix(keys, data, rows, cols):
    encryptor, decryptor = keys
    g = data.draw(hnp.arrays(np.float64, rows, elements=st.floats(-1, 1)))
    x = data.draw(hnp.arrays(np.float64, (rows, cols), elements=st.floats(-100, 100)))
    result = encryptor.encrypt_vector(g).dot(x)
    assert len(result) == cols
    close(decryptor.decrypt_vector(result), x.T @ g, scale=100 * rows)


@SETTINGS
@given(g=st.lists(INTS, min_size=1, max_size=40), x=st.lists(INTS, min_size=40, max_size=40))
def test_dot_ints_exact(keys, g, x):
    encryptor, decryptor = keys
    column = np.array(x[: len(g)], dtype=np.int64)
    result = encryptor.encrypt_vector(np.array(g, dtype=np.int64)).dot(column)
    assert decryptor.decrypt_mantissas(result) == [sum(a * b for a, b in zip(g, x, strict=False))]


@SETTINGS
@given(x=float_arrays(max_size=30))
def test_sum(keys, x):
    encryptor, decryptor = keys
    close(decryptor.decrypt_vector(encryptor.encrypt_vector(x).sum()), [x.sum()], scale=len(x))


@SETTINGS
@given(x=float_arrays(min_size=2))
def test_rerandomize_changes_ciphertexts_not_plaintexts(keys, x):
    encryptor, decryptor = keys
    v = encryptor.encrypt_vector(x)
    w = encryptor.rerandomize(v)
    assert all(a != b for a, b in zip(v.ciphertexts, w.ciphertexts, strict=True))
    np.testing.assert_array_equal(decryptor.decrypt_vector(w), decryptor.decrypt_vector(v))


def test_fresh_encryptions_differ(keys):
    encryptor, _ = keys
    a, b = encryptor.encrypt_vector(np.zeros(4)), encryptor.encrypt_vector(np.zeros(4))
    assert len(set(a.ciphertexts) | set(b.ciphertexts)) == 8


def test_slicing_and_concat(keys):
    encryptor, decryptor = keys
    v = encryptor.encrypt_vector(np.arange(6))
    w = v[1:3].concat(v[5])
    np.testing.assert_array_equal(decryptor.decrypt_vector(w), [1, 2, 5])


@pytest.mark.parametrize("bad", [np.array([np.nan]), np.array([np.inf]), np.array(["a"])])
def test_encrypt_rejects_unencodable(keys, bad):
    encryptor, _ = keys
    with pytest.raises(LocalProtocolError):
        encryptor.encrypt_vector(bad)


def test_encrypt_rejects_too_large(keys):
    encryptor, _ = keys
    with pytest.raises(LocalProtocolError):
        encryptor.encrypt_vector(np.array([2**600], dtype=object))


def test_shape_mismatch_and_mixed_keys_refused(keys):
    encryptor, _ = keys
    v = encryptor.encrypt_vector(np.arange(3))
    other_pub, _ = generate_keypair(512, allow_insecure_test_key=True)
    w = Encryptor(other_pub, allow_insecure_test_key=True).encrypt_vector(np.arange(3))
    with pytest.raises(LocalProtocolError):
        v + np.arange(4)
    with pytest.raises(LocalProtocolError):
        v + w
    with pytest.raises(LocalProtocolError):
        v.dot(np.ones((4, 2)))
    with pytest.raises(LocalProtocolError):
        v.decrease_exponent_to(1)


def test_overflow_is_detected_on_decrypt(keys):
    encryptor, decryptor = keys
    max_int = encryptor.public_key.max_int
    v = encryptor.encrypt_vector(np.array([max_int], dtype=object))
    with pytest.raises(CryptoError):
        decryptor.decrypt_vector(v + v)


def test_exponent_and_precision_choice(keys):
    encryptor, _ = keys
    assert encryptor.encrypt_vector(np.array([1, 2])).exponent == 0
    assert encryptor.encrypt_vector(np.array([1.0])).exponent == -13
    assert encryptor.encrypt_vector(np.array([1.0]), precision=1e-3).exponent == -3
    assert encryptor.encrypt_vector(np.array([1.0]), exponent=-2).exponent == -2
    with pytest.raises(LocalProtocolError):
        encryptor.encrypt_vector(np.array([1.0]), exponent=-2, precision=0.1)


def test_empty_vector(keys):
    encryptor, decryptor = keys
    v = encryptor.encrypt_vector(np.array([], dtype=np.float64))
    assert len(v) == 0
    assert decryptor.decrypt_vector(v).shape == (0,)
    np.testing.assert_array_equal(decryptor.decrypt_vector(v.sum()), [0.0])


def test_vector_type_is_exported():
    assert EncryptedVector.__module__.startswith("protocols.crypto.paillier")


def test_ciphertext_times_ciphertext_refused(keys):
    encryptor, _ = keys
    v = encryptor.encrypt_vector(np.arange(3))
    with pytest.raises(LocalProtocolError):
        v * v
