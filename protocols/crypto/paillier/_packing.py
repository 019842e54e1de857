"""Plaintext packing: several fixed-point values ("slots") in one Paillier plaintext.

Slot ``j`` of a plaintext occupies bits ``[j*slot_bits, (j+1)*slot_bits)``. Each value is encoded as a
mantissa at the scheme's exponent and shifted by ``offset`` so that it is non-negative; a sum of ``k``
packed plaintexts therefore holds ``sum(mantissas) + k*offset`` in every slot. ``slot_bits`` is chosen
so that ``max_summands`` values of size up to ``max_abs`` never carry into the next slot, and the
whole plaintext stays below ``n``. Adding packed ciphertexts adds every slot at the cost of one
multiplication, and one decryption recovers all slots: with SecureBoost's gradient and hessian in
two slots, histogram building costs half the multiplications and half the decryptions.

Packed ciphertexts are :class:`EncryptedVector` objects with exponent 0 whose plaintexts are *not*
``phe``-style signed numbers: decrypt them with :meth:`PackingScheme.decrypt` (or
``Decryptor.decrypt_raw_vector`` followed by :meth:`PackingScheme.unpack`), never ``decrypt_vector``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import phe

from protocols.crypto.paillier._decryptor import Decryptor
from protocols.crypto.paillier._encoding import decode_mantissas, fixed_point_mantissas
from protocols.crypto.paillier._encryptor import Encryptor
from protocols.crypto.paillier._primitives import BASE
from protocols.crypto.paillier._vector import EncryptedVector
from protocols.wire.errors import ConfigError, CryptoError, LocalProtocolError

__all__ = ["PackingScheme"]


@dataclass(frozen=True)
class PackingScheme:
    """How values are laid out in packed plaintexts; both parties must agree on it.

    Attributes:
        slots: values per plaintext.
        slot_bits: width of one slot.
        exponent: fixed-point exponent of every slot value (base 16).
        offset: mantissa added to each value (one more than the largest accepted mantissa size).
        max_summands: most packed plaintexts that may be added before unpacking.
    """

    slots: int
    slot_bits: int
    exponent: int
    offset: int
    max_summands: int

    @classmethod
    def create(
        cls, public_key: phe.PaillierPublicKey, *, slots: int, max_abs: float, exponent: int, max_summands: int
    ) -> PackingScheme:
        """Size the slots for sums of up to ``max_summands`` values with ``|value| <= max_abs``.

        Args:
            public_key: the key the packed plaintexts are encrypted under (bounds the total width).
            slots: values per plaintext.
            max_abs: the largest magnitude any single value may have.
            exponent: fixed-point exponent (base 16); ``16**exponent`` is the absolute precision.
            max_summands: the most plaintexts that will be added together.

        Raises:
            ConfigError: the slots do not fit below ``n`` or an argument is not positive.
        """
        if slots < 1 or max_summands < 1 or not max_abs > 0:
            raise ConfigError("slots, max_summands and max_abs must be positive")
        offset = math.ceil(max_abs * BASE ** (-exponent)) + 1
        slot_bits = (2 * offset * max_summands).bit_length()
        if slots * slot_bits >= int(public_key.n).bit_length() - 1:
            raise ConfigError(
                f"{slots} slots of {slot_bits} bits do not fit in a {int(public_key.n).bit_length()}-bit plaintext; "
                "use fewer slots, fewer summands or a coarser exponent"
            )
        return cls(slots=slots, slot_bits=slot_bits, exponent=exponent, offset=offset, max_summands=max_summands)

    def _slot_mantissas(self, values: npt.ArrayLike) -> list[list[int]]:
        arr = np.asarray(values)
        if arr.ndim != 2 or arr.shape[1] != self.slots:
            raise LocalProtocolError(f"expected values of shape (k, {self.slots}), got {arr.shape}")
        signed = fixed_point_mantissas(arr, self.exponent)
        if any(abs(m) >= self.offset for m in signed):
            raise LocalProtocolError("value larger than the packing scheme's max_abs")
        return [signed[i : i + self.slots] for i in range(0, len(signed), self.slots)]

    def pack(self, values: npt.ArrayLike) -> list[int]:
        """Pack each row of ``values`` (shape ``(k, slots)``) into one non-negative plaintext.

        Raises:
            LocalProtocolError: wrong shape, or a value larger in size than the scheme's ``max_abs``.
        """
        return [self._pack_row(row) for row in self._slot_mantissas(values)]

    def _pack_row(self, mantissas: Sequence[int]) -> int:
        packed = 0
        for j, m in enumerate(mantissas):
            packed |= (m + self.offset) << (j * self.slot_bits)
        return packed

    def unpack(self, plaintexts: Sequence[int], summands: int | Sequence[int] = 1) -> npt.NDArray[np.float64]:
        """Recover the slot values of packed plaintexts, each the sum of ``summands`` packed rows.

        Args:
            plaintexts: raw decrypted plaintexts.
            summands: how many packed rows were added into each plaintext (one count or one per plaintext).

        Returns:
            Array of shape ``(len(plaintexts), slots)``.

        Raises:
            LocalProtocolError: a summand count is outside ``[1, max_summands]``.
            CryptoError: a plaintext is wider than the slots allow (overflow or a bad ciphertext).
        """
        counts = [summands] * len(plaintexts) if isinstance(summands, int) else list(summands)
        if len(counts) != len(plaintexts) or any(not 1 <= k <= self.max_summands for k in counts):
            raise LocalProtocolError(f"summand counts must be one per plaintext, each in [1, {self.max_summands}]")
        rows = [self._unpack_row(int(p), k) for p, k in zip(plaintexts, counts, strict=True)]
        flat = decode_mantissas([m for row in rows for m in row], self.exponent)
        return flat.reshape(len(plaintexts), self.slots)

    def _unpack_row(self, plaintext: int, summands: int) -> list[int]:
        if plaintext < 0 or plaintext.bit_length() > self.slots * self.slot_bits:
            raise CryptoError("packed plaintext overflowed its slots")
        mask = (1 << self.slot_bits) - 1
        return [((plaintext >> (j * self.slot_bits)) & mask) - summands * self.offset for j in range(self.slots)]

    def encrypt(self, encryptor: Encryptor, values: npt.ArrayLike) -> EncryptedVector:
        """Pack the rows of ``values`` and encrypt one ciphertext per row."""
        return encryptor.encrypt_mantissas(self.pack(values), 0)

    def decrypt(
        self, decryptor: Decryptor, vector: EncryptedVector, summands: int | Sequence[int] = 1
    ) -> npt.NDArray[np.float64]:
        """Decrypt and unpack a packed vector (see :meth:`unpack`)."""
        return self.unpack(decryptor.decrypt_raw_vector(vector), summands)
