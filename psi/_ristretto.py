"""Hazardous ristretto255 primitives over libsodium (through ``rbcl``).

**Danger.** These functions do exactly one group operation each and nothing else: no domain
separation, no key management, no checks beyond what libsodium does. A scalar of zero, a hash input
that is not 64 uniformly random bytes, or a point reused across protocols silently breaks the
privacy guarantees built on top. Use :mod:`psi.group` instead unless you are writing that layer.

Encodings are the canonical 32-byte ristretto255 encodings of RFC 9496 §4.3.2; scalars are 32-byte
little-endian integers below the group order ℓ = 2^252 + 27742317777372353535851937790883648493.
"""

from __future__ import annotations

import rbcl

__all__ = [
    "POINT_BYTES",
    "SCALAR_BYTES",
    "UNIFORM_BYTES",
    "from_uniform",
    "is_valid_point",
    "scalar_invert",
    "scalar_random",
    "scalar_reduce",
    "scalarmult",
    "scalarmult_base",
    "scalarmult_many",
]

POINT_BYTES = 32
SCALAR_BYTES = 32
UNIFORM_BYTES = 64


def from_uniform(uniform64: bytes) -> bytes:
    """RFC 9496 §4.3.4 one-way map of 64 uniform bytes to an element (libsodium ``from_hash``)."""
    return bytes(rbcl.crypto_core_ristretto255_from_hash(uniform64))


def is_valid_point(encoding: bytes) -> bool:
    """Whether ``encoding`` is a canonical encoding of a non-identity element."""
    return len(encoding) == POINT_BYTES and bool(rbcl.crypto_core_ristretto255_is_valid_point(encoding))


def scalar_random() -> bytes:
    """A uniformly random non-zero scalar from libsodium's CSPRNG."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_random())


def scalar_reduce(wide64: bytes) -> bytes:
    """Reduce a 64-byte little-endian integer modulo ℓ."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_reduce(wide64))


def scalar_invert(scalar: bytes) -> bytes:
    """Multiplicative inverse of a non-zero scalar modulo ℓ."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_invert(scalar))


def scalarmult(scalar: bytes, point: bytes) -> bytes:
    """``scalar · point``.

    Raises:
        RuntimeError: From libsodium, if ``point`` is not a valid encoding or the product is the identity.
    """
    return bytes(rbcl.crypto_scalarmult_ristretto255(scalar, point))


def scalarmult_base(scalar: bytes) -> bytes:
    """``scalar · B`` for the generator ``B``."""
    return bytes(rbcl.crypto_scalarmult_ristretto255_base(scalar))


def scalarmult_many(scalar: bytes, points: bytes) -> bytes:
    """``scalar · P`` for every 32-byte encoding ``P`` concatenated in ``points``, concatenated.

    Raises:
        RuntimeError: From libsodium, at the first invalid point (the caller finds which).
        ValueError: If ``len(points)`` is not a multiple of 32.
    """
    if len(points) % POINT_BYTES:
        raise ValueError("points must be concatenated 32-byte encodings")
    mult = rbcl.crypto_scalarmult_ristretto255
    view = memoryview(points)
    return b"".join([mult(scalar, bytes(view[i : i + POINT_BYTES])) for i in range(0, len(points), POINT_BYTES)])
