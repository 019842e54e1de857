"""DJN fast-path encryption with a fixed-base table.

Security assumption (read before changing :data:`DEFAULT_DJN_EXPONENT_BITS`): textbook Paillier is
IND-CPA under the decisional composite residuosity (DCR) assumption with ``r`` uniform in ``Z_n*``.
DJN replaces ``r**n`` by ``hs**r = (h**r)**n`` with ``h = -x**2 mod n`` and a *short* ``r``. It stays
IND-CPA under DCR plus the assumption that ``h**r`` for a short ``r`` is indistinguishable from a
uniform element of the subgroup ``<h>`` of ``Z_n*``, whose order is unknown to anyone who cannot
factor ``n`` (the short-exponent indistinguishability assumption; Koshiba and Kurosawa, PKC 2004,
reduce it to the hardness of discrete logarithms with short exponents). DJN themselves take
``r`` of ``ceil(bits/2)`` bits. The best known attack on a ``l``-bit exponent in a group of unknown
order is Pollard's lambda at about ``2**(l/2)`` operations, so we take ``l = 2*kappa = 256`` for
``kappa = 128``, above the ~112-bit strength of a 2048-bit modulus; this is what buys the ~30x
speed-up. Set ``exponent_bits=(bits + 1) // 2`` for the paper's conservative choice (about 3x
slower). The key holder, who can factor ``n``, learns ``h**r`` but it reveals nothing beyond the
plaintext, which it decrypts anyway.
"""

from __future__ import annotations

import secrets

import numpy as np
import numpy.typing as npt
import phe
from gmpy2 import mpz

from protocols.errors import ConfigError, LocalProtocolError
from protocols.paillier._encoding import choose_exponent, encode_mantissas
from protocols.paillier._keys import check_key_size
from protocols.paillier._primitives import CrtFixedBaseTable, FixedBaseTable, djn_h, djn_hs, encrypt_with_obfuscator
from protocols.paillier._vector import EncryptedVector

__all__ = ["DEFAULT_DJN_EXPONENT_BITS", "DEFAULT_WINDOW_BITS", "MIN_DJN_EXPONENT_BITS", "Encryptor"]

DEFAULT_DJN_EXPONENT_BITS = 256
"""Length of the short DJN exponent ``r``: ``2 * kappa`` for ``kappa = 128`` (see module docstring)."""

MIN_DJN_EXPONENT_BITS = 224
"""Never accept less: ``2 * 112``, the strength of a 2048-bit modulus."""

DEFAULT_WINDOW_BITS = 8
"""Fixed-base table digit width: 32 multiplications per encryption, a 4 MiB table at 2048 bits."""


class Encryptor:
    """Encrypts under one Paillier public key with DJN obfuscation from a precomputed table.

    Build one per public key and reuse it: the table costs about ``(exponent_bits / w) * 2**w``
    multiplications (≈0.1 s at 2048 bits) and ``4 MiB`` with the defaults.
    """

    def __init__(
        self,
        public_key: phe.PaillierPublicKey,
        *,
        hs: int | None = None,
        exponent_bits: int = DEFAULT_DJN_EXPONENT_BITS,
        window_bits: int = DEFAULT_WINDOW_BITS,
        allow_insecure_test_key: bool = False,
        private_key: phe.PaillierPrivateKey | None = None,
    ) -> None:
        """Check the key and build the DJN table.

        Args:
            public_key: the ``phe`` public key, possibly received from a peer.
            hs: the DJN base ``h**n mod n**2`` to reuse (e.g. in a worker process). ``None`` draws a
                fresh ``h`` from the system CSPRNG. A caller-chosen ``hs`` must come from
                :func:`~protocols.paillier._primitives.djn_hs` of a random ``h = -x**2``; a base of
                small order would make ciphertexts guessable.
            exponent_bits: length of the short random exponent ``r``; shorter than
                :data:`MIN_DJN_EXPONENT_BITS` is refused because it shrinks the search for ``r``.
            window_bits: fixed-base table digit width (speed/memory trade-off only).
            allow_insecure_test_key: accept a modulus under 2048 bits. Tests only.
            private_key: the key holder's own private key, to compute ``hs**r`` modulo ``p**2`` and
                ``q**2`` (about 2x faster encryption, identical ciphertexts). Only for a party that
                encrypts under its own key (e.g. SecureBoost's active party); the encryptor then holds
                the factorisation, so never build one with a private key for a peer's use.

        Raises:
            ConfigError: the key is too short, ``exponent_bits`` is too small, or ``private_key``
                does not match ``public_key``.
        """
        check_key_size(public_key, allow_insecure_test_key=allow_insecure_test_key)
        if exponent_bits < MIN_DJN_EXPONENT_BITS:
            raise ConfigError(f"DJN exponent of {exponent_bits} bits refused: use at least {MIN_DJN_EXPONENT_BITS}")
        self.public_key = public_key
        self.exponent_bits = exponent_bits
        self.window_bits = window_bits
        self._n = mpz(public_key.n)
        self._nsquare = self._n * self._n
        self.hs = mpz(hs) if hs is not None else djn_hs(self._n, djn_h(self._n, self._random_unit()))
        self._table = self._build_table(private_key)

    def _build_table(self, private_key: phe.PaillierPrivateKey | None) -> FixedBaseTable | CrtFixedBaseTable:
        if private_key is None:
            return FixedBaseTable(self.hs, self._nsquare, self.exponent_bits, self.window_bits)
        if private_key.public_key != self.public_key:
            raise ConfigError("private key does not match the public key")
        p, q = int(private_key.p), int(private_key.q)
        return CrtFixedBaseTable(self.hs, p, q, self.exponent_bits, self.window_bits)

    def _random_unit(self) -> int:
        return secrets.randbelow(int(self._n) - 2) + 2  # gcd(x, n) > 1 would factor n: negligible

    def random_exponent(self) -> int:
        """Draw a fresh short DJN exponent ``r`` from the system CSPRNG."""
        return secrets.randbits(self.exponent_bits)

    def obfuscator(self) -> mpz:
        """Return a fresh ``hs**r mod n**2`` (an encryption of zero without the ``g`` factor)."""
        return self._table.pow(self.random_exponent())

    def encrypt_with(self, plaintext: int, r: int) -> mpz:
        """Encrypt a raw plaintext with a caller-chosen exponent ``r``: ``(1 + m*n) * hs**r mod n**2``.

        .. warning:: Hazardous seam for known-answer tests. Reusing ``r`` across two plaintexts, or an
           ``r`` that anyone can guess, reveals their relation. Use :meth:`encrypt_raw`.

        Args:
            plaintext: an integer in ``[0, n)``.
            r: an integer in ``[0, 2**exponent_bits)``.
        """
        if not 0 <= int(plaintext) < self._n:
            raise LocalProtocolError("raw plaintext must lie in [0, n)")
        if not 0 <= int(r) < 1 << self.exponent_bits:
            raise LocalProtocolError("DJN exponent r must lie in [0, 2**exponent_bits)")
        return encrypt_with_obfuscator(self._n, self._nsquare, plaintext, self._table.pow(r))

    def encrypt_raw(self, plaintext: int) -> mpz:
        """Encrypt a raw plaintext in ``[0, n)`` with fresh randomness."""
        return self.encrypt_with(plaintext, self.random_exponent())

    def encode(
        self, values: npt.ArrayLike, *, exponent: int | None = None, precision: float | None = None
    ) -> tuple[list[int], int]:
        """Return ``(mantissas mod n, exponent)`` for ``values`` (see :func:`choose_exponent`)."""
        arr = np.asarray(values)
        chosen = choose_exponent(arr, exponent=exponent, precision=precision)
        return encode_mantissas(arr, chosen, int(self._n), int(self.public_key.max_int)), chosen

    def encrypt_vector(
        self, values: npt.ArrayLike, *, exponent: int | None = None, precision: float | None = None
    ) -> EncryptedVector:
        """Encrypt a 1-D array under one shared fixed-point exponent.

        Args:
            values: ints or floats; negative values wrap mod ``n`` like ``phe``.
            exponent: the fixed-point exponent (base 16); all elements share it.
            precision: alternative to ``exponent``: the smallest magnitude that must survive rounding.

        Raises:
            LocalProtocolError: a value is not finite or too large for the key.
        """
        mantissas, chosen = self.encode(values, exponent=exponent, precision=precision)
        return self.encrypt_mantissas(mantissas, chosen)

    def encrypt_mantissas(self, mantissas: list[int], exponent: int) -> EncryptedVector:
        """Encrypt already-encoded mantissas (each in ``[0, n)``) under ``exponent``."""
        rs = [self.random_exponent() for _ in mantissas]
        return self.encrypt_mantissas_with(mantissas, rs, exponent)

    def encrypt_mantissas_with(self, mantissas: list[int], rs: list[int], exponent: int) -> EncryptedVector:
        """Vector form of :meth:`encrypt_with` (hazardous seam: ``rs`` must be fresh and secret)."""
        cts = (self.encrypt_with(m, r) for m, r in zip(mantissas, rs, strict=True))
        return EncryptedVector(self.public_key, tuple(cts), exponent)

    def encrypt(
        self, value: float, *, exponent: int | None = None, precision: float | None = None
    ) -> phe.EncryptedNumber:
        """Encrypt one number as a ``phe.EncryptedNumber`` through the fast path."""
        return self.encrypt_vector(np.array([value]), exponent=exponent, precision=precision).to_encrypted_numbers()[0]

    def rerandomize(self, vector: EncryptedVector) -> EncryptedVector:
        """Multiply every ciphertext by a fresh obfuscator (same plaintexts, unlinkable ciphertexts).

        Raises:
            LocalProtocolError: ``vector`` is under another key.
        """
        if vector.public_key != self.public_key:
            raise LocalProtocolError("vector is under a different public key")
        cts = (c * self.obfuscator() % self._nsquare for c in vector.ciphertexts)
        return EncryptedVector(self.public_key, tuple(cts), vector.exponent)
