"""Fixed-point encoding of whole vectors with one shared exponent.

A real ``x`` is stored as the integer mantissa ``round(x * BASE**-exponent)`` reduced mod ``n``, the
convention of ``phe.EncodedNumber``: mantissas up to ``max_int = n//3 - 1`` are positive, those from
``n - max_int`` are negative, and the band in between signals overflow. Sharing one exponent across a
vector means sums need no exponent alignment (one modular multiplication per addition).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from protocols.crypto.paillier._primitives import BASE
from protocols.wire.errors import CryptoError, LocalProtocolError

__all__ = [
    "DEFAULT_FLOAT_EXPONENT",
    "choose_exponent",
    "decode_mantissas",
    "encode_mantissas",
    "fixed_point_mantissas",
    "signed_mantissas",
]

DEFAULT_FLOAT_EXPONENT = -13
"""Default exponent for float vectors: ``16**-13 = 2**-52``, an absolute precision of about 2.2e-16."""

_LOG2_BASE = 4


def choose_exponent(values: npt.NDArray[np.generic], *, exponent: int | None, precision: float | None) -> int:
    """Return the shared exponent for ``values``.

    Args:
        values: the array to encode.
        exponent: use exactly this exponent.
        precision: pick the exponent so that a value of size ``precision`` is not rounded to zero.

    Returns:
        ``exponent`` if given; else from ``precision``; else 0 for integer arrays and
        :data:`DEFAULT_FLOAT_EXPONENT` otherwise.

    Raises:
        LocalProtocolError: both ``exponent`` and ``precision`` were given, or ``precision <= 0``.
    """
    if exponent is not None and precision is not None:
        raise LocalProtocolError("give exponent or precision, not both")
    if exponent is not None:
        return int(exponent)
    if precision is not None:
        if not precision > 0:
            raise LocalProtocolError("precision must be positive")
        return math.floor(math.log(precision, BASE))
    if values.dtype.kind in "biu" or (values.dtype.kind == "O" and all(isinstance(v, int) for v in values.flat)):
        return 0
    return DEFAULT_FLOAT_EXPONENT


def _float_mantissas(values: npt.NDArray[np.generic], exponent: int) -> list[int]:
    x = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise LocalProtocolError("cannot encode NaN or infinity")
    scaled = np.rint(np.ldexp(x, -_LOG2_BASE * exponent))  # exact scaling by a power of two
    if not np.all(np.isfinite(scaled)):
        raise LocalProtocolError("value too large for the chosen exponent")
    return [int(v) for v in scaled.tolist()]


def _exact_mantissas(values: npt.NDArray[np.generic], exponent: int) -> list[int]:
    if exponent <= 0:
        shift = -_LOG2_BASE * exponent
        return [int(v) << shift for v in values.tolist()]
    scale = Fraction(BASE) ** exponent
    return [round(Fraction(v) / scale) for v in values.tolist()]


def fixed_point_mantissas(values: npt.ArrayLike, exponent: int) -> list[int]:
    """Return the signed integer mantissas ``round(x * BASE**-exponent)`` of a flattened array.

    Raises:
        LocalProtocolError: a value is not finite or the dtype is not numeric.
    """
    arr = np.asarray(values).reshape(-1)
    if arr.dtype.kind in "biuO":
        return _exact_mantissas(arr, exponent)
    if arr.dtype.kind == "f":
        return _float_mantissas(arr, exponent)
    raise LocalProtocolError(f"cannot encode values of dtype {arr.dtype}")


def encode_mantissas(values: npt.ArrayLike, exponent: int, n: int, max_int: int) -> list[int]:
    """Return the mantissas of ``values`` at ``exponent`` reduced mod ``n``.

    Raises:
        LocalProtocolError: a value is not finite or its mantissa exceeds ``max_int`` in size.
    """
    mantissas = fixed_point_mantissas(values, exponent)
    if any(abs(m) > max_int for m in mantissas):
        raise LocalProtocolError("value too large to encode under this key at this exponent")
    return [m % n for m in mantissas]


def signed_mantissas(raw: Sequence[int], n: int, max_int: int) -> list[int]:
    """Map raw plaintexts in ``[0, n)`` back to signed mantissas.

    Raises:
        CryptoError: a plaintext lies in the overflow band (too many additions, or a bad ciphertext).
    """
    out: list[int] = []
    for m in raw:
        m = int(m)
        if m <= max_int:
            out.append(m)
        elif m >= n - max_int:
            out.append(m - n)
        else:
            raise CryptoError("decrypted value overflowed the encoding range")
    return out


def decode_mantissas(mantissas: Sequence[int], exponent: int) -> npt.NDArray[np.float64]:
    """Return ``mantissa * BASE**exponent`` as float64 (correctly rounded)."""
    if exponent >= 0:
        scale = BASE**exponent
        return np.array([float(m * scale) for m in mantissas], dtype=np.float64)
    divisor = BASE**-exponent
    return np.array([m / divisor for m in mantissas], dtype=np.float64)
