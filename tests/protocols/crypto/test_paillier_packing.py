"""Plaintext packing: round trips, homomorphic sums of packed ciphertexts, overflow bounds."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from protocols.crypto.paillier import PackingScheme
from protocols.wire.errors import ConfigError, CryptoError, LocalProtocolError

EXPONENT = -8  # 16**-8 ~ 2.3e-10 absolute precision


def values(rows, slots, bound=1.0):
    return hnp.arrays(np.float64, (rows, slots), elements=st.floats(-bound, bound))


@settings(max_examples=25, deadline=None)
@given(data=st.data(), rows=st.integers(1, 6), slots=st.integers(1, 4))
def test_pack_unpack_round_trip(keys, data, rows, slots):
    encryptor, _ = keys
    scheme = PackingScheme.create(encryptor.public_key, slots=slots, max_abs=1.0, exponent=EXPONENT, max_summands=1)
    x = data.draw(values(rows, slots))
    np.testing.assert_allclose(scheme.unpack(scheme.pack(x)), x, rtol=0, atol=16.0**EXPONENT)


@settings(max_examples=20, deadline=None)
@given(data=st.data(), rows=st.integers(1, 40))
def test_sum_of_packed_ciphertexts_unpacks_to_column_sums(keys, data, rows):
    # Prepare: SecureBoost-style gradient and hessian in two slots
    encryptor, decryptor = keys
    scheme = PackingScheme.create(encryptor.public_key, slots=2, max_abs=1.0, exponent=EXPONENT, max_summands=40)
    gh = data.draw(values(rows, 2))

    # Execute
    total = scheme.encrypt(encryptor, gh).sum()
    result = scheme.decrypt(decryptor, total, summands=rows)

    # Assert
    np.testing.assert_allclose(result[0], gh.sum(axis=0), rtol=0, atol=rows * 16.0**EXPONENT)


def test_bin_sums_with_per_plaintext_counts(keys):
    encryptor, decryptor = keys
    scheme = PackingScheme.create(encryptor.public_key, slots=2, max_abs=1.0, exponent=EXPONENT, max_summands=5)
    gh = np.array([[0.5, 0.25], [-1.0, 0.125], [0.75, 0.0], [-0.25, 0.1], [1.0, 1.0]])
    packed = scheme.encrypt(encryptor, gh)
    bins = packed[0:2].sum().concat(packed[2:5].sum())
    result = scheme.decrypt(decryptor, bins, summands=[2, 3])
    np.testing.assert_allclose(result, [gh[:2].sum(axis=0), gh[2:].sum(axis=0)], atol=1e-9)


def test_extreme_values_at_max_summands(keys):
    encryptor, decryptor = keys
    scheme = PackingScheme.create(encryptor.public_key, slots=3, max_abs=2.0, exponent=EXPONENT, max_summands=50)
    for fill in (2.0, -2.0):
        x = np.full((50, 3), fill)
        result = scheme.decrypt(decryptor, scheme.encrypt(encryptor, x).sum(), summands=50)
        np.testing.assert_allclose(result, [[50 * fill] * 3], atol=1e-6)


def test_slot_sizing_and_capacity(keys):
    encryptor, _ = keys
    scheme = PackingScheme.create(encryptor.public_key, slots=2, max_abs=1.0, exponent=EXPONENT, max_summands=1000)
    assert 2 * scheme.offset * scheme.max_summands < 2**scheme.slot_bits
    with pytest.raises(ConfigError):
        PackingScheme.create(encryptor.public_key, slots=20, max_abs=1.0, exponent=EXPONENT, max_summands=1000)
    with pytest.raises(ConfigError):
        PackingScheme.create(encryptor.public_key, slots=0, max_abs=1.0, exponent=EXPONENT, max_summands=1)


def test_value_above_bound_refused(keys):
    encryptor, _ = keys
    scheme = PackingScheme.create(encryptor.public_key, slots=2, max_abs=1.0, exponent=EXPONENT, max_summands=4)
    with pytest.raises(LocalProtocolError):
        scheme.pack(np.array([[1.5, 0.0]]))
    with pytest.raises(LocalProtocolError):
        scheme.pack(np.array([0.5, 0.0]))


def test_bad_summand_counts_and_overflow_refused(keys):
    encryptor, _ = keys
    scheme = PackingScheme.create(encryptor.public_key, slots=2, max_abs=1.0, exponent=EXPONENT, max_summands=4)
    packed = scheme.pack(np.array([[0.5, 0.5]]))
    with pytest.raises(LocalProtocolError):
        scheme.unpack(packed, summands=5)
    with pytest.raises(LocalProtocolError):
        scheme.unpack(packed, summands=[1, 1])
    with pytest.raises(CryptoError):
        scheme.unpack([1 << (2 * scheme.slot_bits)])
