"""Multi-process batches give the same plaintexts as the in-process path."""

import numpy as np
import pytest

from protocols.crypto.paillier import Decryptor, ParallelPaillier, generate_keypair
from protocols.wire.errors import LocalProtocolError


def test_pool_encrypt_and_decrypt_match_in_process(keys):
    # Prepare
    encryptor, decryptor = keys
    x = np.random.default_rng(7).normal(size=300)

    # Execute
    with ParallelPaillier(encryptor, decryptor, workers=2, threshold=100, chunk_size=64) as pool:
        v = pool.encrypt_vector(x)
        in_process = decryptor.decrypt_vector(v)
        pooled = pool.decrypt_vector(encryptor.encrypt_vector(x) + v)

    # Assert
    assert len(v) == 300 and len(set(v.ciphertexts)) == 300
    np.testing.assert_allclose(in_process, x, atol=1e-12)
    np.testing.assert_allclose(pooled, 2 * x, atol=1e-12)


def test_small_batches_stay_in_process(keys):
    encryptor, decryptor = keys
    pool = ParallelPaillier(encryptor, decryptor, threshold=1000)
    v = pool.encrypt_vector(np.arange(5))
    np.testing.assert_array_equal(pool.decrypt_vector(v), np.arange(5))
    assert pool._pool is None
    pool.close()


def test_misconfiguration_refused(keys):
    encryptor, _ = keys
    _, other_private = generate_keypair(512, allow_insecure_test_key=True)
    with pytest.raises(LocalProtocolError):
        ParallelPaillier(encryptor, Decryptor(other_private, allow_insecure_test_key=True))
    with pytest.raises(LocalProtocolError):
        ParallelPaillier(encryptor, workers=0)
    with pytest.raises(LocalProtocolError):
        ParallelPaillier(encryptor).decrypt_vector(encryptor.encrypt_vector(np.arange(2)))
