"""CRT decryption of single ciphertexts and whole vectors."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import phe

from protocols.crypto.paillier._encoding import decode_mantissas, signed_mantissas
from protocols.crypto.paillier._keys import check_key_size
from protocols.crypto.paillier._primitives import CrtKey, crt_decrypt
from protocols.crypto.paillier._vector import EncryptedVector
from protocols.wire.errors import LocalProtocolError

__all__ = ["Decryptor"]


class Decryptor:
    """Decrypts with the Chinese remainder theorem (two half-size exponentiations mod ``p**2``, ``q**2``)."""

    def __init__(self, private_key: phe.PaillierPrivateKey, *, allow_insecure_test_key: bool = False) -> None:
        """Precompute the CRT values of ``private_key``.

        Args:
            private_key: the ``phe`` private key.
            allow_insecure_test_key: accept a modulus under 2048 bits. Tests only.

        Raises:
            ConfigError: the key is too short and the flag is not set.
        """
        self.public_key = private_key.public_key
        check_key_size(self.public_key, allow_insecure_test_key=allow_insecure_test_key)
        self._key = CrtKey.from_primes(int(self.public_key.n), int(private_key.p), int(private_key.q))

    def decrypt_raw(self, ciphertext: int) -> int:
        """Return the raw plaintext in ``[0, n)`` of one ciphertext."""
        return int(crt_decrypt(self._key, ciphertext))

    def _check(self, vector: EncryptedVector) -> None:
        if vector.public_key != self.public_key:
            raise LocalProtocolError("vector is under a different public key")

    def decrypt_raw_vector(self, vector: EncryptedVector) -> list[int]:
        """Return the raw plaintexts in ``[0, n)`` (for packed plaintexts; no sign decoding)."""
        self._check(vector)
        return [int(crt_decrypt(self._key, c)) for c in vector.ciphertexts]

    def decrypt_mantissas(self, vector: EncryptedVector) -> list[int]:
        """Return the signed integer mantissas (exact; value = mantissa * 16**vector.exponent).

        Raises:
            CryptoError: a plaintext fell in the overflow band.
        """
        raw = self.decrypt_raw_vector(vector)
        return signed_mantissas(raw, int(self.public_key.n), int(self.public_key.max_int))

    def decrypt_vector(self, vector: EncryptedVector) -> npt.NDArray[np.float64]:
        """Return the decrypted values as float64.

        Raises:
            CryptoError: a plaintext fell in the overflow band.
        """
        return decode_mantissas(self.decrypt_mantissas(vector), vector.exponent)

    def decrypt(self, number: phe.EncryptedNumber) -> float:
        """Decrypt one ``phe.EncryptedNumber`` through the CRT path (value as float)."""
        vector = EncryptedVector.from_ciphertexts(
            number.public_key, [number.ciphertext(be_secure=False)], number.exponent
        )
        return float(self.decrypt_vector(vector)[0])
