"""Binary wire format of an :class:`~protocols.crypto.paillier.EncryptedVector`.

Layout (all integers big-endian)::

    magic      4 bytes   b"TPV1"
    k          u16       byte length of n
    n          k bytes   the public key, once per vector
    exponent   i32       the shared fixed-point exponent (base 16)
    count      u32       number of ciphertexts
    c_0..      count * 2k bytes, each ciphertext as a fixed-width 2k-byte integer

The receiver decodes against the public key it expects (never the one in the message), checks the
exact length, and checks that every ciphertext is a unit mod ``n**2`` (``0 < c < n**2`` and
``gcd(c, n) = 1``): a non-unit is never a valid encryption, and homomorphic results built on it
would be garbage (or, via the gcd, expose a factor of ``n``). Any failure raises one opaque
:class:`~protocols.wire.errors.RemoteProtocolError`.
"""

from __future__ import annotations

import struct

import gmpy2
import phe
from gmpy2 import mpz

from protocols.crypto.paillier import EncryptedVector
from protocols.wire.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["MAGIC", "decode_vector", "encode_vector", "encoded_size"]

MAGIC = b"TPV1"
_HEAD = struct.Struct(">4sH")
_TAIL = struct.Struct(">iI")


def _nbytes(n: int) -> int:
    return (int(n).bit_length() + 7) // 8


def encoded_size(public_key: phe.PaillierPublicKey, count: int) -> int:
    """Return the exact byte length of an encoded vector of ``count`` ciphertexts."""
    k = _nbytes(public_key.n)
    return _HEAD.size + k + _TAIL.size + count * 2 * k


def encode_vector(vector: EncryptedVector) -> bytes:
    """Serialise ``vector`` (public key and exponent once, then fixed-width ciphertexts).

    Raises:
        LocalProtocolError: the exponent does not fit in 32 bits or the key is over 65535 bytes.
    """
    n = int(vector.public_key.n)
    k = _nbytes(n)
    if not -(2**31) <= vector.exponent < 2**31 or k >= 2**16:
        raise LocalProtocolError("vector exponent or key size out of the codec's range")
    parts = [_HEAD.pack(MAGIC, k), n.to_bytes(k, "big"), _TAIL.pack(vector.exponent, len(vector))]
    width = 2 * k
    parts.extend(int(c).to_bytes(width, "big") for c in vector.ciphertexts)
    return b"".join(parts)


def _invalid() -> RemoteProtocolError:
    return RemoteProtocolError("invalid encrypted vector")


def _parse_header(data: bytes, public_key: phe.PaillierPublicKey) -> tuple[int, int, int]:
    """Return ``(offset of first ciphertext, exponent, count)`` after checking magic, key and length."""
    n = int(public_key.n)
    k = _nbytes(n)
    if len(data) < _HEAD.size + k + _TAIL.size:
        raise _invalid()
    magic, k_sent = _HEAD.unpack_from(data, 0)
    if magic != MAGIC or k_sent != k or int.from_bytes(data[_HEAD.size : _HEAD.size + k], "big") != n:
        raise _invalid()
    exponent, count = _TAIL.unpack_from(data, _HEAD.size + k)
    if len(data) != encoded_size(public_key, count):
        raise _invalid()
    return _HEAD.size + k + _TAIL.size, exponent, count


def _check_units(ciphertexts: list[mpz], n: mpz) -> None:
    """Every ``c`` in ``(0, n**2)`` and coprime to ``n`` (one gcd over the product mod ``n``)."""
    nsquare = n * n
    product = mpz(1)
    for c in ciphertexts:
        if not 0 < c < nsquare:
            raise _invalid()
        product = product * c % n
    if gmpy2.gcd(product, n) != 1:
        raise _invalid()


def decode_vector(data: bytes, public_key: phe.PaillierPublicKey, *, max_count: int | None = None) -> EncryptedVector:
    """Parse and validate an encoded vector under the expected ``public_key``.

    Args:
        data: bytes from a peer.
        public_key: the key the vector must be under; a vector under any other key is rejected.
        max_count: reject vectors with more ciphertexts than this (``None``: no limit).

    Raises:
        RemoteProtocolError: wrong magic, key or length, too many elements, or a ciphertext that is not
            a unit mod ``n**2``. The message does not say which.
    """
    offset, exponent, count = _parse_header(data, public_key)
    if max_count is not None and count > max_count:
        raise _invalid()
    width = 2 * _nbytes(public_key.n)
    view = memoryview(data)
    cts = [mpz(int.from_bytes(view[offset + i * width : offset + (i + 1) * width], "big")) for i in range(count)]
    _check_units(cts, mpz(public_key.n))
    return EncryptedVector(public_key, tuple(cts), exponent)
