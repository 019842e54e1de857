"""Interoperability with plain phe, key-size policy, and the package's exported names."""

import numpy as np
import phe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocols.crypto.paillier as paillier
from protocols.crypto.paillier import (
    MIN_KEY_BITS,
    Decryptor,
    EncryptedVector,
    Encryptor,
    check_key_size,
    decrypt_vector,
    encrypt_vector,
    generate_keypair,
)
from protocols.wire.errors import ConfigError

FLOATS = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
# phe gives each float its own exponent; mixing 1e-300 with 1e9 would overflow any common exponent.
MODERATE_FLOATS = st.builds(lambda m, e: m * 2.0**e, st.integers(-(2**40), 2**40), st.integers(-30, 10))


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(512, allow_insecure_test_key=True)


@settings(max_examples=20, deadline=None)
@given(values=st.lists(FLOATS, min_size=1, max_size=8))
def test_fast_path_ciphertexts_decrypt_with_plain_phe(keys, values):
    # Prepare
    public_key, private_key = keys
    encryptor = Encryptor(public_key, allow_insecure_test_key=True)

    # Execute
    numbers = encryptor.encrypt_vector(np.array(values)).to_encrypted_numbers()

    # Assert
    assert all(isinstance(x, phe.EncryptedNumber) for x in numbers)
    np.testing.assert_allclose([private_key.decrypt(x) for x in numbers], values, rtol=0, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(values=st.lists(MODERATE_FLOATS, min_size=1, max_size=8))
def test_phe_ciphertexts_decrypt_with_crt_path(keys, values):
    # Prepare
    public_key, private_key = keys
    numbers = [public_key.encrypt(v) for v in values]  # each with its own exponent

    # Execute
    vector = EncryptedVector.from_encrypted_numbers(numbers)
    decrypted = Decryptor(private_key, allow_insecure_test_key=True).decrypt_vector(vector)

    # Assert
    np.testing.assert_array_equal(decrypted, values)


def test_phe_arithmetic_on_fast_path_ciphertexts(keys):
    public_key, private_key = keys
    encryptor = Encryptor(public_key, allow_insecure_test_key=True)
    a = encryptor.encrypt(2.5)
    b = public_key.encrypt(-1.25)
    assert private_key.decrypt(a + b) == 1.25
    assert private_key.decrypt(a * 4) == 10.0


def test_single_number_decrypt(keys):
    public_key, private_key = keys
    assert Decryptor(private_key, allow_insecure_test_key=True).decrypt(public_key.encrypt(-7)) == -7.0


def test_recipes_round_trip(keys):
    public_key, private_key = keys
    x = np.array([1.5, -2.0, 3.25])
    v = encrypt_vector(public_key, x, allow_insecure_test_key=True)
    np.testing.assert_array_equal(decrypt_vector(private_key, v, allow_insecure_test_key=True), x)


def test_generate_keypair_refuses_short_keys_without_flag():
    with pytest.raises(ConfigError, match="2048"):
        generate_keypair(1024)


@pytest.mark.parametrize("bits", [32, 63, 511])
def test_generate_keypair_refuses_tiny_or_odd_even_with_flag(bits):
    with pytest.raises(ConfigError):
        generate_keypair(bits, allow_insecure_test_key=True)


def test_generate_keypair_with_flag_gives_phe_keys_of_exact_size():
    public_key, private_key = generate_keypair(256, allow_insecure_test_key=True)
    assert isinstance(public_key, phe.PaillierPublicKey)
    assert isinstance(private_key, phe.PaillierPrivateKey)
    assert public_key.n.bit_length() == 256
    assert private_key.decrypt(public_key.encrypt(5)) == 5


def test_default_key_size_is_2048():
    assert MIN_KEY_BITS == 2048
    assert generate_keypair.__defaults__ == (2048,)


def test_short_peer_keys_refused_everywhere(keys):
    public_key, private_key = keys
    with pytest.raises(ConfigError):
        check_key_size(public_key)
    with pytest.raises(ConfigError):
        Encryptor(public_key)
    with pytest.raises(ConfigError):
        Decryptor(private_key)
    with pytest.raises(ConfigError):
        encrypt_vector(public_key, np.array([1.0]))


def test_short_djn_exponent_refused(keys):
    public_key, _ = keys
    with pytest.raises(ConfigError):
        Encryptor(public_key, exponent_bits=128, allow_insecure_test_key=True)


def test_exported_members():
    exported = set(paillier.__all__)
    public = {name for name in vars(paillier) if not name.startswith("_")}
    assert exported <= public
    for name in exported:
        member = getattr(paillier, name)
        if hasattr(member, "__module__"):
            assert member.__module__.startswith("protocols.crypto.paillier")
