"""``EncryptedVector``: ciphertexts under one public key sharing one fixed-point exponent.

Operations and their cost per element (``M`` = one multiplication mod ``n**2``):

- ``v + w`` (ciphertexts): 1 M; exponents are aligned first if they differ (a power per element).
- ``v + x`` (plaintext array or scalar, rounded to ``v.exponent``): 1 M.
- ``v * x`` (elementwise by plaintext): one power with the mantissa of ``x`` as exponent.
- ``v.dot(X)``: per column of ``X``, a Pippenger multi-exponentiation ``prod_i c_i**X_ij``.
- ``v.sum()``: ``len(v) - 1`` M.

Results of homomorphic operations are *not* re-randomised; before sending a result to the key
holder, re-randomise it (:meth:`protocols.crypto.paillier.Encryptor.rerandomize`) or mask it, otherwise the
key holder may link it to its inputs. In particular a product with a zero plaintext (``v * 0``,
an all-zero column in ``dot``) and the sum of an empty vector are the trivial ciphertext ``1``,
which anyone can recognise as zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import gmpy2
import numpy as np
import numpy.typing as npt
import phe
from gmpy2 import mpz

from protocols.crypto.paillier._encoding import choose_exponent, encode_mantissas
from protocols.crypto.paillier._primitives import BASE, multi_exp
from protocols.wire.errors import LocalProtocolError

__all__ = ["EncryptedVector"]


@lru_cache(maxsize=32)
def _modulus(n: int) -> tuple[mpz, mpz]:
    n_ = mpz(n)
    return n_, n_ * n_


def _signed(m: int, n: int) -> int:
    """Map a mantissa mod ``n`` to the signed value of smallest size (for cheap exponents)."""
    return m - n if m > n // 2 else m


@dataclass(frozen=True, eq=False)
class EncryptedVector:
    """A vector of Paillier ciphertexts under one key with one shared fixed-point exponent.

    Attributes:
        public_key: the ``phe`` public key all ciphertexts are under.
        ciphertexts: the ciphertexts, residues mod ``n**2``.
        exponent: the shared fixed-point exponent: element ``i`` encrypts ``mantissa_i * 16**exponent``.
    """

    public_key: phe.PaillierPublicKey
    ciphertexts: tuple[mpz, ...]
    exponent: int

    __array_ufunc__ = None  # make ``ndarray + vector`` defer to our reflected operators

    @classmethod
    def from_ciphertexts(
        cls, public_key: phe.PaillierPublicKey, ciphertexts: Iterable[int], exponent: int
    ) -> EncryptedVector:
        """Wrap raw ciphertext integers (no validation: use the codec for untrusted input)."""
        return cls(public_key, tuple(mpz(c) for c in ciphertexts), int(exponent))

    @classmethod
    def from_encrypted_numbers(cls, numbers: Sequence[phe.EncryptedNumber]) -> EncryptedVector:
        """Gather ``phe`` ciphertexts, lowering every exponent to the smallest one.

        Raises:
            LocalProtocolError: empty input or mixed public keys.
        """
        if not numbers:
            raise LocalProtocolError("cannot build an EncryptedVector from no numbers")
        public_key = numbers[0].public_key
        if any(x.public_key != public_key for x in numbers):
            raise LocalProtocolError("EncryptedNumbers are under different public keys")
        exponent = min(x.exponent for x in numbers)
        aligned = [x.decrease_exponent_to(exponent) if x.exponent != exponent else x for x in numbers]
        return cls.from_ciphertexts(public_key, (x.ciphertext(be_secure=False) for x in aligned), exponent)

    def to_encrypted_numbers(self) -> list[phe.EncryptedNumber]:
        """Return the elements as ``phe.EncryptedNumber`` objects (same ciphertexts, same exponent)."""
        return [phe.EncryptedNumber(self.public_key, int(c), self.exponent) for c in self.ciphertexts]

    def __len__(self) -> int:
        return len(self.ciphertexts)

    def __getitem__(self, index: int | slice) -> EncryptedVector:
        """Return the selected elements as a vector (an integer index gives a length-1 vector)."""
        picked = self.ciphertexts[index]
        return self._with(picked if isinstance(picked, tuple) else (picked,), self.exponent)

    def _with(self, ciphertexts: Iterable[mpz], exponent: int) -> EncryptedVector:
        return EncryptedVector(self.public_key, tuple(ciphertexts), exponent)

    @property
    def _n(self) -> tuple[mpz, mpz]:
        return _modulus(int(self.public_key.n))

    def _encode(self, values: npt.ArrayLike, exponent: int) -> list[int]:
        arr = np.asarray(values)
        if arr.ndim == 0:
            arr = np.full(len(self), arr)
        if arr.shape != (len(self),):
            raise LocalProtocolError(f"plaintext of shape {arr.shape} does not match vector of length {len(self)}")
        return encode_mantissas(arr, exponent, int(self.public_key.n), int(self.public_key.max_int))

    def concat(self, other: EncryptedVector) -> EncryptedVector:
        """Return ``self`` followed by ``other`` (exponents are aligned to the smaller one)."""
        a, b = self._aligned_with(other)
        return self._with(a.ciphertexts + b.ciphertexts, a.exponent)

    def decrease_exponent_to(self, new_exponent: int) -> EncryptedVector:
        """Return the same values at a smaller exponent (each ciphertext raised to ``16**diff``).

        Raises:
            LocalProtocolError: ``new_exponent`` is larger than the current exponent.
        """
        if new_exponent > self.exponent:
            raise LocalProtocolError("can only decrease the exponent of an encrypted vector")
        if new_exponent == self.exponent:
            return self
        factor = mpz(BASE) ** (self.exponent - new_exponent)
        _, nsquare = self._n
        return self._with((gmpy2.powmod(c, factor, nsquare) for c in self.ciphertexts), new_exponent)

    def _aligned_with(self, other: EncryptedVector) -> tuple[EncryptedVector, EncryptedVector]:
        if other.public_key != self.public_key:
            raise LocalProtocolError("encrypted vectors are under different public keys")
        exponent = min(self.exponent, other.exponent)
        return self.decrease_exponent_to(exponent), other.decrease_exponent_to(exponent)

    def __add__(self, other: EncryptedVector | npt.ArrayLike) -> EncryptedVector:
        """Add ciphertexts elementwise, or a plaintext array/scalar rounded to ``self.exponent``."""
        if isinstance(other, EncryptedVector):
            return self._add_encrypted(other)
        return self._add_plain(other)

    def __radd__(self, other: npt.ArrayLike) -> EncryptedVector:
        return self._add_plain(other)

    def _add_encrypted(self, other: EncryptedVector) -> EncryptedVector:
        if len(other) != len(self):
            raise LocalProtocolError(f"cannot add vectors of lengths {len(self)} and {len(other)}")
        a, b = self._aligned_with(other)
        _, nsquare = self._n
        return self._with((x * y % nsquare for x, y in zip(a.ciphertexts, b.ciphertexts, strict=True)), a.exponent)

    def _add_plain(self, values: npt.ArrayLike) -> EncryptedVector:
        n, nsquare = self._n
        mantissas = self._encode(values, self.exponent)
        return self._with(
            ((1 + m * n) * c % nsquare for m, c in zip(mantissas, self.ciphertexts, strict=True)), self.exponent
        )

    def __neg__(self) -> EncryptedVector:
        _, nsquare = self._n
        return self._with((gmpy2.invert(c, nsquare) for c in self.ciphertexts), self.exponent)

    def __sub__(self, other: EncryptedVector | npt.ArrayLike) -> EncryptedVector:
        if isinstance(other, EncryptedVector):
            return self + (-other)
        return self._add_plain(-np.asarray(other))

    def __rsub__(self, other: npt.ArrayLike) -> EncryptedVector:
        return (-self)._add_plain(other)

    def __mul__(self, other: npt.ArrayLike) -> EncryptedVector:
        """Multiply elementwise by plaintext values (exponent 0 for ints, else the float default)."""
        return self.mul(other)

    def __rmul__(self, other: npt.ArrayLike) -> EncryptedVector:
        return self.mul(other)

    def mul(
        self, values: npt.ArrayLike, *, exponent: int | None = None, precision: float | None = None
    ) -> EncryptedVector:
        """Multiply elementwise by plaintext ``values``; the result's exponent is the sum of both.

        Args:
            values: a scalar or an array of ``len(self)`` plaintexts.
            exponent: fixed-point exponent for ``values`` (see :func:`choose_exponent`).
            precision: alternative to ``exponent``.
        """
        if isinstance(values, EncryptedVector):
            raise LocalProtocolError("Paillier cannot multiply two ciphertexts; multiply by plaintext")
        arr = np.asarray(values)
        plain_exponent = choose_exponent(arr, exponent=exponent, precision=precision)
        n, nsquare = self._n
        nn = int(n)
        mantissas = self._encode(arr, plain_exponent)
        powered = (gmpy2.powmod(c, _signed(m, nn), nsquare) for m, c in zip(mantissas, self.ciphertexts, strict=True))
        return self._with(powered, self.exponent + plain_exponent)

    def dot(
        self, matrix: npt.ArrayLike, *, exponent: int | None = None, precision: float | None = None
    ) -> EncryptedVector:
        """Return ``matrix.T @ self``: element ``j`` encrypts ``sum_i self_i * matrix[i, j]``.

        Args:
            matrix: plaintext array of shape ``(len(self),)`` or ``(len(self), d)``.
            exponent: fixed-point exponent for ``matrix`` (see :func:`choose_exponent`).
            precision: alternative to ``exponent``.

        Returns:
            A vector of length ``d`` (1 for a 1-D ``matrix``) with exponent ``self.exponent + exponent``.
        """
        arr = np.asarray(matrix)
        arr2 = arr.reshape(-1, 1) if arr.ndim == 1 else arr
        if arr2.ndim != 2 or arr2.shape[0] != len(self):
            raise LocalProtocolError(f"matrix of shape {arr.shape} does not match vector of length {len(self)}")
        plain_exponent = choose_exponent(arr2, exponent=exponent, precision=precision)
        columns = [self._dot_column(arr2[:, j], plain_exponent) for j in range(arr2.shape[1])]
        return self._with(columns, self.exponent + plain_exponent)

    def _dot_column(self, column: npt.NDArray[np.generic], plain_exponent: int) -> mpz:
        n, nsquare = self._n
        nn = int(n)
        signed = [_signed(m, nn) for m in self._encode(column, plain_exponent)]
        pos = [(c, m) for c, m in zip(self.ciphertexts, signed, strict=True) if m > 0]
        neg = [(c, -m) for c, m in zip(self.ciphertexts, signed, strict=True) if m < 0]
        total = multi_exp([c for c, _ in pos], [m for _, m in pos], nsquare)
        if neg:
            neg_total = multi_exp([c for c, _ in neg], [m for _, m in neg], nsquare)
            total = total * gmpy2.invert(neg_total, nsquare) % nsquare
        return total

    def sum(self) -> EncryptedVector:
        """Return a length-1 vector encrypting the sum of the elements."""
        _, nsquare = self._n
        acc = mpz(1)
        for c in self.ciphertexts:
            acc = acc * c % nsquare
        return self._with((acc,), self.exponent)
