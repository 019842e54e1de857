"""Known-answer tests: DJN encryption with injected randomness and CRT decryption.

Vectors: tests/vectors/paillier_kat.json, computed with plain phe only (see its "provenance").
"""

import json
from pathlib import Path

import numpy as np
import phe
import pytest
from gmpy2 import mpz

from protocols.crypto.paillier import Decryptor, EncryptedVector, Encryptor
from protocols.crypto.paillier._primitives import FixedBaseTable, djn_h, djn_hs, multi_exp
from protocols.wire.errors import ConfigError, LocalProtocolError

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "paillier_kat.json").read_text())
KEYS = VECTORS["keys"]
ENCRYPTIONS = [
    pytest.param(key, case, id=f"{key['name']}-{i}") for key in KEYS for i, case in enumerate(key["encryptions"])
]


def _keys(key):
    n = int(key["n"])
    public_key = phe.PaillierPublicKey(n)
    private_key = phe.PaillierPrivateKey(public_key, int(key["p"]), int(key["q"]))
    return public_key, private_key


def _encryptor(key):
    public_key, _ = _keys(key)
    return Encryptor(public_key, hs=int(key["hs"]), allow_insecure_test_key=True)


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k["name"])
def test_djn_base_from_x(key):
    # Prepare
    n, x = int(key["n"]), int(key["x"])

    # Execute
    h = djn_h(n, x)
    hs = djn_hs(n, h)

    # Assert
    assert (int(h), int(hs)) == (int(key["h"]), int(key["hs"]))


@pytest.mark.parametrize(("key", "case"), ENCRYPTIONS)
def test_encrypt_with_known_answer(key, case):
    # Prepare
    encryptor = _encryptor(key)

    # Execute
    c = encryptor.encrypt_with(int(case["m"]), int(case["r"]))

    # Assert
    assert int(c) == int(case["c"])


@pytest.mark.parametrize(("key", "case"), ENCRYPTIONS)
def test_crt_decrypt_known_answer(key, case):
    # Prepare
    _, private_key = _keys(key)
    decryptor = Decryptor(private_key, allow_insecure_test_key=True)

    # Execute
    m = decryptor.decrypt_raw(int(case["c"]))

    # Assert
    assert m == int(case["m"])


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k["name"])
def test_vector_known_answer(key):
    # Prepare
    encryptor = _encryptor(key)
    _, private_key = _keys(key)
    vec = key["vector"]
    mantissas, exponent = encryptor.encode(np.array(vec["values"]), exponent=vec["exponent"])

    # Execute
    encrypted = encryptor.encrypt_mantissas_with(mantissas, [int(r) for r in vec["r"]], exponent)
    decrypted = Decryptor(private_key, allow_insecure_test_key=True).decrypt_vector(encrypted)

    # Assert
    assert [int(c) for c in encrypted.ciphertexts] == [int(c) for c in vec["c"]]
    assert encrypted.exponent == vec["exponent"]
    np.testing.assert_allclose(decrypted, vec["values"], rtol=0, atol=16.0 ** vec["exponent"])


def test_toy_vector_decrypts_with_plain_phe():
    # Prepare
    key = KEYS[0]
    _, private_key = _keys(key)
    vec = key["vector"]
    encrypted = EncryptedVector.from_ciphertexts(private_key.public_key, [int(c) for c in vec["c"]], vec["exponent"])

    # Execute
    values = [private_key.decrypt(x) for x in encrypted.to_encrypted_numbers()]

    # Assert
    assert values == vec["values"]


@pytest.mark.parametrize("exponent", [0, 1, 2, 255, 256, 2**256 - 1, 0x5A5A5A5A5A])
@pytest.mark.parametrize("window_bits", [1, 3, 8])
def test_fixed_base_table_matches_powmod(exponent, window_bits):
    # Prepare
    modulus = 2**127 - 1
    table = FixedBaseTable(3, modulus, 256, window_bits)

    # Execute
    result = table.pow(exponent)

    # Assert
    assert int(result) == pow(3, exponent, modulus)


def test_fixed_base_table_rejects_out_of_range_exponent():
    table = FixedBaseTable(3, 1009, 16, 4)
    with pytest.raises(ValueError):
        table.pow(1 << 16)
    with pytest.raises(ValueError):
        table.pow(-1)


@pytest.mark.parametrize("count", [0, 1, 2, 7, 100])
def test_multi_exp_matches_naive_product(count):
    # Prepare
    modulus = 2**89 - 1
    bases = [3 + 7 * i for i in range(count)]
    exponents = [(i * 0x9E3779B97F4A7C15) % 2**61 for i in range(count)]

    # Execute
    result = multi_exp([mpz(b) for b in bases], exponents, mpz(modulus))

    # Assert
    expected = 1
    for b, e in zip(bases, exponents, strict=True):
        expected = expected * pow(b, e, modulus) % modulus
    assert int(result) == expected


@pytest.mark.parametrize(("key", "case"), ENCRYPTIONS)
def test_key_holder_crt_encryptor_gives_identical_ciphertexts(key, case):
    # Prepare
    public_key, private_key = _keys(key)
    encryptor = Encryptor(public_key, hs=int(key["hs"]), allow_insecure_test_key=True, private_key=private_key)

    # Execute
    c = encryptor.encrypt_with(int(case["m"]), int(case["r"]))

    # Assert
    assert int(c) == int(case["c"])


def test_encrypt_with_rejects_out_of_range_inputs():
    encryptor = _encryptor(KEYS[0])
    n = int(KEYS[0]["n"])
    with pytest.raises(LocalProtocolError):
        encryptor.encrypt_with(n, 1)
    with pytest.raises(LocalProtocolError):
        encryptor.encrypt_with(1, 2**256)
    with pytest.raises(LocalProtocolError):
        encryptor.encrypt_with(1, -1)


def test_private_key_of_other_key_refused():
    public_key, _ = _keys(KEYS[0])
    _, other_private = _keys(KEYS[1])
    with pytest.raises(ConfigError):
        Encryptor(public_key, allow_insecure_test_key=True, private_key=other_private)
