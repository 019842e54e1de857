"""VFL-specific glue over :mod:`protocols.crypto.paillier`: key bytes, masked plaintexts, additive masks.

Masking: a party adds a fresh encryption of ``R`` drawn uniformly from ``[0, n)`` (system CSPRNG) to
each ciphertext before the key holder decrypts it. The key holder sees ``m + R mod n``, which is
uniform on ``[0, n)`` whatever ``m`` is (a one-time pad in ``Z_n``). A mask is used once.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import phe

from protocols.crypto.paillier import EncryptedVector, Encryptor, check_key_size, decode_mantissas, signed_mantissas
from protocols.crypto.paillier.codec import decode_vector, encode_vector
from protocols.wire.errors import CryptoError, RemoteProtocolError

__all__ = [
    "Mask",
    "decode_plaintexts",
    "decode_vector",
    "encode_plaintexts",
    "encode_vector",
    "mask_vector",
    "public_key_from_bytes",
    "public_key_to_bytes",
    "unmask",
]


def _nbytes(n: int) -> int:
    return (int(n).bit_length() + 7) // 8


def public_key_to_bytes(public_key: phe.PaillierPublicKey) -> bytes:
    """Return the modulus ``n`` as big-endian bytes (``g = n + 1`` is implied)."""
    n = int(public_key.n)
    return n.to_bytes(_nbytes(n), "big")


def public_key_from_bytes(data: bytes, *, allow_insecure_test_key: bool = False) -> phe.PaillierPublicKey:
    """Parse a public key from a peer and refuse short moduli.

    Raises:
        RemoteProtocolError: empty or even modulus.
        ConfigError: the modulus is shorter than 2048 bits and the test flag is not set.
    """
    n = int.from_bytes(data, "big")
    if n < 3 or n % 2 == 0:
        raise RemoteProtocolError("invalid Paillier public key")
    public_key = phe.PaillierPublicKey(n)
    check_key_size(public_key, allow_insecure_test_key=allow_insecure_test_key)
    return public_key


def encode_plaintexts(values: Sequence[int], n: int) -> bytes:
    """Encode raw plaintexts in ``[0, n)`` as fixed-width big-endian integers."""
    width = _nbytes(n)
    return b"".join(int(v).to_bytes(width, "big") for v in values)


def decode_plaintexts(data: bytes, n: int, *, count: int) -> list[int]:
    """Decode ``count`` raw plaintexts, each checked to lie in ``[0, n)``.

    Raises:
        RemoteProtocolError: wrong length or a value out of range.
    """
    width = _nbytes(n)
    if len(data) != width * count:
        raise RemoteProtocolError("invalid plaintext vector")
    values = [int.from_bytes(data[i * width : (i + 1) * width], "big") for i in range(count)]
    if any(v >= n for v in values):
        raise RemoteProtocolError("invalid plaintext vector")
    return values


@dataclass(frozen=True)
class Mask:
    """The secret additive masks of one masked vector, and the vector's fixed-point exponent."""

    values: tuple[int, ...]
    exponent: int


def mask_vector(encryptor: Encryptor, vector: EncryptedVector) -> tuple[EncryptedVector, Mask]:
    """Return ``[[v + R]]`` with ``R`` fresh and uniform in ``[0, n)``, and the mask to remove later.

    The added ciphertexts are fresh encryptions, so the result is also re-randomised.
    """
    n = int(vector.public_key.n)
    masks = [secrets.randbelow(n) for _ in range(len(vector))]
    masked = vector + encryptor.encrypt_mantissas(masks, vector.exponent)
    return masked, Mask(tuple(masks), vector.exponent)


def unmask(raw: Sequence[int], mask: Mask, public_key: phe.PaillierPublicKey) -> npt.NDArray[np.float64]:
    """Remove ``mask`` from decrypted ``raw`` values and decode them as fixed-point floats.

    Raises:
        RemoteProtocolError: wrong count, or a value that decodes out of range (a bad reply).
    """
    if len(raw) != len(mask.values):
        raise RemoteProtocolError("masked reply has the wrong length")
    n = int(public_key.n)
    plain = [(int(v) - r) % n for v, r in zip(raw, mask.values, strict=True)]
    try:
        mantissas = signed_mantissas(plain, n, int(public_key.max_int))
    except CryptoError as exc:
        raise RemoteProtocolError("masked reply does not decode") from exc
    return decode_mantissas(mantissas, mask.exponent)
