"""Hazardous Paillier primitives: raw integers, no encoding, no validation, no randomness of their own.

.. warning::
    Everything here is a sharp tool. These functions take the obfuscation exponent ``r`` from the
    caller and trust every argument. Reusing an ``r`` for two plaintexts, passing an ``r`` from a
    predictable source, or skipping the range checks done by the safe layer breaks semantic
    security. Use :class:`~protocols.crypto.paillier.Encryptor`, :class:`~protocols.crypto.paillier.Decryptor` and
    :class:`~protocols.crypto.paillier.EncryptedVector` instead. This module exists so that the safe layer,
    the known-answer tests and the worker processes share one implementation of the maths.

Notation: ``n`` the modulus, ``nsquare = n**2``, ``g = n + 1`` (so ``g**m = 1 + m*n mod n**2`` and
encryption needs no exponentiation of ``g``).

DJN obfuscation (Damgård, Jurik, Nielsen, "A generalization of Paillier's public-key system with
applications to electronic voting", IJIS 2010, §4.2): pick ``x`` at random, set ``h = -x**2 mod n``
and ``hs = h**n mod n**2``. A ciphertext is ``(1 + m*n) * hs**r mod n**2`` with a *short* random
``r``. Because ``hs**r = (h**r)**n``, this equals textbook Paillier with randomness ``h**r mod n``,
so any Paillier implementation decrypts it. ``hs`` is a fixed base, so ``hs**r`` is computed from a
precomputed table (:class:`FixedBaseTable`) with one modular multiplication per window of ``r``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2
from gmpy2 import mpz

__all__ = [
    "BASE",
    "CrtFixedBaseTable",
    "CrtKey",
    "FixedBaseTable",
    "crt_decrypt",
    "djn_h",
    "djn_hs",
    "encrypt_with_obfuscator",
    "multi_exp",
    "nude_ciphertext",
]

BASE = 16
"""Fixed-point base, the same as ``phe.EncodedNumber.BASE`` so exponents mean the same in both."""


def nude_ciphertext(n: mpz, nsquare: mpz, plaintext: int) -> mpz:
    """Return ``g**plaintext mod n**2 = 1 + plaintext*n mod n**2`` (no randomness: NOT a ciphertext).

    Args:
        n: the public modulus.
        nsquare: ``n**2``.
        plaintext: an integer in ``[0, n)``.
    """
    return (1 + mpz(plaintext) * n) % nsquare


def encrypt_with_obfuscator(n: mpz, nsquare: mpz, plaintext: int, obfuscator: mpz) -> mpz:
    """Return ``(1 + plaintext*n) * obfuscator mod n**2``.

    Args:
        n: the public modulus.
        nsquare: ``n**2``.
        plaintext: an integer in ``[0, n)``.
        obfuscator: an ``n``-th residue mod ``n**2`` that is never reused (e.g. ``hs**r``).
    """
    # (1 + m*n) * o = o + n * (m * o mod n)  (mod n**2): one product mod n instead of one mod n**2
    return (obfuscator + n * (mpz(plaintext) * obfuscator % n)) % nsquare


def djn_h(n: int, x: int) -> mpz:
    """Return the DJN generator ``h = -x**2 mod n``.

    Args:
        n: the public modulus.
        x: a secret random unit mod ``n``; the encrypting party draws it and may forget it.
    """
    n_ = mpz(n)
    return (-(mpz(x) * x)) % n_


def djn_hs(n: int, h: int) -> mpz:
    """Return the DJN fixed base ``hs = h**n mod n**2``."""
    n_ = mpz(n)
    return gmpy2.powmod(mpz(h), n_, n_ * n_)


class FixedBaseTable:
    """Precomputed powers of one base for fast ``base**e mod m`` with ``e < 2**exponent_bits``.

    The table holds ``base**(d * 2**(w*i))`` for every window ``i`` and digit ``d < 2**w``, so a power
    costs one multiplication per non-zero window digit (``exponent_bits / w`` at most) instead of
    ``exponent_bits`` squarings. Memory: ``ceil(exponent_bits / w) * 2**w`` residues.
    """

    def __init__(self, base: int, modulus: int, exponent_bits: int, window_bits: int = 8) -> None:
        """Build the table.

        Args:
            base: the fixed base.
            modulus: the modulus (``n**2`` for DJN).
            exponent_bits: largest exponent length supported.
            window_bits: digit width ``w``; cost per power falls as ``1/w``, memory grows as ``2**w``.
        """
        self.modulus = mpz(modulus)
        self.exponent_bits = exponent_bits
        self.window_bits = window_bits
        self._mask = (1 << window_bits) - 1
        self._rows = self._build(mpz(base) % self.modulus)

    def _build(self, base: mpz) -> list[list[mpz]]:
        rows: list[list[mpz]] = []
        windows = -(-self.exponent_bits // self.window_bits)
        step = base
        for _ in range(windows):
            row = [mpz(1), step]
            for _ in range(self._mask - 1):
                row.append(row[-1] * step % self.modulus)
            rows.append(row)
            step = row[-1] * step % self.modulus  # base ** (2**(w*(i+1)))
        return rows

    def pow(self, exponent: int) -> mpz:
        """Return ``base**exponent mod modulus`` for ``0 <= exponent < 2**exponent_bits``."""
        e = int(exponent)
        if e < 0 or e.bit_length() > self.exponent_bits:
            raise ValueError("exponent outside the table's range")
        acc: mpz | None = None
        w, mask, mod = self.window_bits, self._mask, self.modulus
        for row in self._rows:
            digit = e & mask
            e >>= w
            if digit:
                acc = row[digit] if acc is None else acc * row[digit] % mod
        return mpz(1) if acc is None else acc


class CrtFixedBaseTable:
    """``base**e mod (p*q)**2`` from two half-size tables mod ``p**2`` and ``q**2`` (key holder only).

    Multiplications modulo ``p**2`` are about four times cheaper than modulo ``n**2``; the results
    are identical to :class:`FixedBaseTable` over ``n**2``. Holding this object means holding the
    factorisation of ``n``.
    """

    def __init__(self, base: int, p: int, q: int, exponent_bits: int, window_bits: int = 8) -> None:
        """Build both tables (same arguments as :class:`FixedBaseTable`, with the factors of ``n``)."""
        self._psquare = mpz(p) * p
        self._qsquare = mpz(q) * q
        self._p_table = FixedBaseTable(base, self._psquare, exponent_bits, window_bits)
        self._q_table = FixedBaseTable(base, self._qsquare, exponent_bits, window_bits)
        self._psquare_inverse = gmpy2.invert(self._psquare, self._qsquare)

    def pow(self, exponent: int) -> mpz:
        """Return ``base**exponent mod n**2`` for ``0 <= exponent < 2**exponent_bits``."""
        a = self._p_table.pow(exponent)
        b = self._q_table.pow(exponent)
        return a + self._psquare * ((b - a) * self._psquare_inverse % self._qsquare)


def _pippenger_window(count: int, bits: int) -> int:
    """Choose the bucket width minimising ``ceil(bits/w) * (count + 2**(w+1))`` multiplications."""
    best_w, best_cost = 1, None
    for w in range(1, 17):
        cost = -(-bits // w) * (count + (2 << w))
        if best_cost is None or cost < best_cost:
            best_w, best_cost = w, cost
    return best_w


def _window_sum(bases: Sequence[mpz], exponents: Sequence[int], shift: int, w: int, modulus: mpz) -> mpz | None:
    """Return ``prod_i bases[i] ** digit_i`` where ``digit_i`` is window ``shift`` of ``exponents[i]``."""
    mask = (1 << w) - 1
    buckets: list[mpz | None] = [None] * (mask + 1)
    for base, e in zip(bases, exponents, strict=True):
        d = (e >> shift) & mask
        if d:
            b = buckets[d]
            buckets[d] = base if b is None else b * base % modulus
    running: mpz | None = None
    total: mpz | None = None
    for d in range(mask, 0, -1):
        b = buckets[d]
        if b is not None:
            running = b if running is None else running * b % modulus
        if running is not None:
            total = running if total is None else total * running % modulus
    return total


def multi_exp(bases: Sequence[mpz], exponents: Sequence[int], modulus: mpz) -> mpz:
    """Return ``prod_i bases[i] ** exponents[i] mod modulus`` (Pippenger's bucket method).

    Args:
        bases: residues mod ``modulus``.
        exponents: non-negative integers, one per base.
        modulus: the modulus.
    """
    bits = max((int(e).bit_length() for e in exponents), default=0)
    if bits == 0:
        return mpz(1)
    exps = [int(e) for e in exponents]
    w = _pippenger_window(len(exps), bits)
    acc = mpz(1)
    for shift in range(w * ((bits - 1) // w), -1, -w):
        if acc != 1:
            acc = gmpy2.powmod(acc, 1 << w, modulus)
        part = _window_sum(bases, exps, shift, w, modulus)
        if part is not None:
            acc = acc * part % modulus
    return acc


@dataclass(frozen=True)
class CrtKey:
    """The private values CRT decryption needs, as gmpy2 integers (Paillier 1999, §7)."""

    p: mpz
    q: mpz
    psquare: mpz
    qsquare: mpz
    hp: mpz
    hq: mpz
    p_inverse: mpz

    @classmethod
    def from_primes(cls, n: int, p: int, q: int) -> CrtKey:
        """Derive the CRT values from the factors of ``n`` (``g = n + 1``)."""
        p_, q_ = (mpz(p), mpz(q)) if p < q else (mpz(q), mpz(p))
        g = mpz(n) + 1
        return cls(
            p=p_,
            q=q_,
            psquare=p_ * p_,
            qsquare=q_ * q_,
            hp=_h(g, p_),
            hq=_h(g, q_),
            p_inverse=gmpy2.invert(p_, q_),
        )


def _h(g: mpz, x: mpz) -> mpz:
    """Paillier's ``h_x = L_x(g**(x-1) mod x**2)**-1 mod x``."""
    return gmpy2.invert((gmpy2.powmod(g, x - 1, x * x) - 1) // x, x)


def crt_decrypt(key: CrtKey, ciphertext: mpz) -> mpz:
    """Return the raw plaintext in ``[0, n)`` of ``ciphertext`` (no range or unit check)."""
    mp = (gmpy2.powmod(ciphertext, key.p - 1, key.psquare) - 1) // key.p * key.hp % key.p
    mq = (gmpy2.powmod(ciphertext, key.q - 1, key.qsquare) - 1) // key.q * key.hq % key.q
    return mp + (mq - mp) * key.p_inverse % key.q * key.p
