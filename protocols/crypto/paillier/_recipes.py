"""One-call recipes over :class:`Encryptor` and :class:`Decryptor` with cached per-key tables."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
import phe

from protocols.crypto.paillier._decryptor import Decryptor
from protocols.crypto.paillier._encryptor import Encryptor
from protocols.crypto.paillier._vector import EncryptedVector

__all__ = ["decrypt_vector", "encrypt_vector"]


@lru_cache(maxsize=8)
def _encryptor_for(public_key: phe.PaillierPublicKey, allow_insecure_test_key: bool) -> Encryptor:
    return Encryptor(public_key, allow_insecure_test_key=allow_insecure_test_key)


@lru_cache(maxsize=8)
def _decryptor_for(private_key: phe.PaillierPrivateKey, allow_insecure_test_key: bool) -> Decryptor:
    return Decryptor(private_key, allow_insecure_test_key=allow_insecure_test_key)


def encrypt_vector(
    public_key: phe.PaillierPublicKey,
    values: npt.ArrayLike,
    *,
    exponent: int | None = None,
    precision: float | None = None,
    allow_insecure_test_key: bool = False,
) -> EncryptedVector:
    """Encrypt ``values`` under ``public_key`` with one shared exponent (DJN fast path).

    The DJN table of the last few keys is cached in this process; build an :class:`Encryptor`
    yourself to control its lifetime.

    Args:
        public_key: the ``phe`` public key.
        values: 1-D ints or floats.
        exponent: fixed-point exponent (base 16) shared by all elements.
        precision: alternative to ``exponent``.
        allow_insecure_test_key: accept a modulus under 2048 bits. Tests only.

    Raises:
        ConfigError: the key is too short.
        LocalProtocolError: a value cannot be encoded.
    """
    encryptor = _encryptor_for(public_key, allow_insecure_test_key)
    return encryptor.encrypt_vector(values, exponent=exponent, precision=precision)


def decrypt_vector(
    private_key: phe.PaillierPrivateKey, vector: EncryptedVector, *, allow_insecure_test_key: bool = False
) -> npt.NDArray[np.float64]:
    """Decrypt ``vector`` with CRT and decode it to float64.

    Raises:
        ConfigError: the key is too short.
        CryptoError: a plaintext fell in the overflow band.
    """
    return _decryptor_for(private_key, allow_insecure_test_key).decrypt_vector(vector)
