"""Safe ristretto255 operations for PSI: domain-separated hashing, secret scalars, validated multiplication.

Bulk operations take and return *packed* arrays: concatenated 32-byte canonical encodings, which is
also exactly what travels on the wire (no per-element framing). Every point received from a peer
passes through :func:`multiply_batch`, which rejects non-canonical encodings, points off the group
and the identity (libsodium checks all three while decoding) and raises :class:`InvalidPoint` with
the index of the first bad element.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from psi import _ristretto
from psi._errors import InvalidPoint

__all__ = [
    "HASH_DOMAIN",
    "POINT_BYTES",
    "Scalar",
    "hash_to_group",
    "hash_to_group_batch",
    "multiply",
    "multiply_batch",
    "split_points",
]

POINT_BYTES = _ristretto.POINT_BYTES
HASH_DOMAIN = b"tandem/psi/v1/hash-to-ristretto255"


class Scalar:
    """A secret non-zero scalar modulo the group order.

    The value never appears in ``repr``; :meth:`to_bytes` exists so that worker processes can receive
    it, and must not be logged or persisted outside the node's key store.
    """

    __slots__ = ("_bytes",)

    def __init__(self, encoding: bytes) -> None:
        """Wrap a 32-byte little-endian scalar (use :meth:`random` or :meth:`from_int` instead)."""
        if len(encoding) != _ristretto.SCALAR_BYTES or _ristretto.scalar_reduce(encoding + bytes(32)) != encoding:
            raise ValueError("scalar must be a canonical 32-byte encoding")
        if encoding == bytes(32):
            raise ValueError("scalar must not be zero")
        self._bytes = bytes(encoding)

    @classmethod
    def random(cls) -> Scalar:
        """A fresh uniformly random scalar from libsodium's CSPRNG."""
        return cls(_ristretto.scalar_random())

    @classmethod
    def from_int(cls, value: int) -> Scalar:
        """A scalar from a Python integer (reduced modulo the group order). For tests and known answers."""
        return cls(_ristretto.scalar_reduce(value.to_bytes(64, "little")))

    def to_bytes(self) -> bytes:
        """The 32-byte encoding. **Secret**: do not log."""
        return self._bytes

    def invert(self) -> Scalar:
        """The multiplicative inverse."""
        return Scalar(_ristretto.scalar_invert(self._bytes))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scalar) and other._bytes == self._bytes

    def __hash__(self) -> int:
        return hash(self._bytes)

    def __repr__(self) -> str:
        return "Scalar(<secret>)"

    def __reduce__(self) -> tuple[type[Scalar], tuple[bytes]]:
        return (Scalar, (self._bytes,))


def _hash_input(key_type: str, value: str) -> bytes:
    kt = key_type.encode()
    v = value.encode()
    return b"".join((len(HASH_DOMAIN).to_bytes(2, "big"), HASH_DOMAIN, len(kt).to_bytes(2, "big"), kt, v))


def hash_to_group(key_type: str, value: str) -> bytes:
    """Hash one canonical identifier to a group element.

    ``from_uniform(SHA-512(len‖domain ‖ len‖key_type ‖ value))``: the key type is bound in, so the
    same digits as a mobile number and as a customer id never collide.

    Args:
        key_type: The identifier kind (``KeyType`` value).
        value: The canonical identifier (see :mod:`psi.identifiers`).

    Returns:
        The 32-byte encoding.
    """
    return _ristretto.from_uniform(hashlib.sha512(_hash_input(key_type, value)).digest())


def hash_to_group_batch(key_type: str, values: Iterable[str]) -> bytes:
    """:func:`hash_to_group` over many values, packed."""
    h2g = _ristretto.from_uniform
    sha = hashlib.sha512
    return b"".join([h2g(sha(_hash_input(key_type, v)).digest()) for v in values])


def multiply(scalar: Scalar, point: bytes) -> bytes:
    """``scalar · point`` with validation.

    Raises:
        InvalidPoint: If ``point`` is not a valid non-identity element.
    """
    if len(point) != POINT_BYTES:
        raise InvalidPoint(0)
    try:
        return _ristretto.scalarmult(scalar.to_bytes(), point)
    except RuntimeError:
        raise InvalidPoint(0) from None


def multiply_batch(scalar: Scalar, points: bytes) -> bytes:
    """``scalar · P`` for every packed element ``P``, validating each.

    Raises:
        InvalidPoint: Naming the index of the first invalid element (or the truncated tail).
    """
    if len(points) % POINT_BYTES:
        raise InvalidPoint(len(points) // POINT_BYTES)
    try:
        return _ristretto.scalarmult_many(scalar.to_bytes(), points)
    except RuntimeError:
        raise InvalidPoint(_first_invalid(points)) from None


def _first_invalid(points: bytes) -> int | None:
    for index, point in enumerate(split_points(points)):
        if not _ristretto.is_valid_point(point):
            return index
    return None


def split_points(points: bytes) -> Sequence[bytes]:
    """Unpack concatenated 32-byte encodings into a list of ``bytes``."""
    return [points[i : i + POINT_BYTES] for i in range(0, len(points), POINT_BYTES)]
