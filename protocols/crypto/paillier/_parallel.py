"""Multi-process batch encryption and decryption.

Large vectors are split into chunks and handed to a ``ProcessPoolExecutor``. Each worker rebuilds the
encryptor's DJN table (from the public ``hs``) and the CRT key in its initializer, so only integers
cross the process boundary. Below ``threshold`` elements the work stays in the calling process,
where it is cheaper than shipping it.

The private key's primes are passed to the worker processes of this machine; never point this class
at a pool you do not own. Workers start with ``spawn`` by default, which is safe in threaded services
(``fork`` would copy locks held by other threads); as with any ``spawn`` pool, a script that uses it
must guard its entry point with ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from types import TracebackType

import gmpy2
import numpy as np
import numpy.typing as npt
import phe
from gmpy2 import mpz

from protocols.crypto.paillier._decryptor import Decryptor
from protocols.crypto.paillier._encoding import choose_exponent, decode_mantissas, encode_mantissas, signed_mantissas
from protocols.crypto.paillier._encryptor import Encryptor
from protocols.crypto.paillier._primitives import CrtKey, crt_decrypt
from protocols.crypto.paillier._vector import EncryptedVector
from protocols.wire.errors import LocalProtocolError

__all__ = ["DEFAULT_PARALLEL_THRESHOLD", "ParallelPaillier"]

DEFAULT_PARALLEL_THRESHOLD = 1024
"""Vectors shorter than this are processed in the calling process."""

_worker_encryptor: Encryptor | None = None
_worker_crt: CrtKey | None = None


def _init_worker(n: int, hs: int, exponent_bits: int, window_bits: int, primes: tuple[int, int] | None) -> None:
    global _worker_encryptor, _worker_crt
    public_key = phe.PaillierPublicKey(n)
    private_key = phe.PaillierPrivateKey(public_key, *primes) if primes is not None else None
    _worker_encryptor = Encryptor(
        public_key,
        hs=hs,
        exponent_bits=exponent_bits,
        window_bits=window_bits,
        allow_insecure_test_key=True,  # the parent process already applied the key-size policy
        private_key=private_key,
    )
    _worker_crt = CrtKey.from_primes(n, *primes) if primes is not None else None


def _encrypt_chunk(mantissas: list[int]) -> list[int]:
    assert _worker_encryptor is not None
    return [int(_worker_encryptor.encrypt_raw(m)) for m in mantissas]


def _decrypt_chunk(ciphertexts: list[int]) -> list[int]:
    assert _worker_crt is not None
    return [int(crt_decrypt(_worker_crt, c)) for c in ciphertexts]


def _dot_chunk(ciphertexts: list[int], exponent: int, block: npt.NDArray[np.generic], plain_exponent: int) -> list[int]:
    assert _worker_encryptor is not None
    vector = EncryptedVector.from_ciphertexts(_worker_encryptor.public_key, ciphertexts, exponent)
    return [int(c) for c in vector.dot(block, exponent=plain_exponent).ciphertexts]


def _affine_chunk(ciphertexts: list[int], factors: list[int], offsets: list[int]) -> list[int]:
    assert _worker_encryptor is not None
    return [int(c) for c in _affine(_worker_encryptor, ciphertexts, factors, offsets)]


def _affine(
    encryptor: Encryptor, ciphertexts: Sequence[int], factors: Sequence[int], offsets: Sequence[int]
) -> list[mpz]:
    """``c_i ** f_i * (1 + o_i * n) * hs**r_i mod n**2`` with fresh ``r_i`` (signed ``f_i``, ``o_i`` mod ``n``)."""
    n = mpz(encryptor.public_key.n)
    nsquare = n * n
    out: list[mpz] = []
    for c, f, o in zip(ciphertexts, factors, offsets, strict=True):
        powered = gmpy2.powmod(mpz(c), f, nsquare)
        out.append(powered * encryptor.encrypt_raw(o) % nsquare)
    return out


def _chunks(items: Sequence[int], size: int) -> list[list[int]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class ParallelPaillier:
    """Batch encryption/decryption over a pool of worker processes, for one key pair.

    Use as a context manager (or call :meth:`close`) so that the workers exit.
    """

    def __init__(
        self,
        encryptor: Encryptor,
        decryptor: Decryptor | None = None,
        *,
        workers: int = 2,
        threshold: int = DEFAULT_PARALLEL_THRESHOLD,
        chunk_size: int | None = None,
        start_method: str = "spawn",
    ) -> None:
        """Configure the pool; workers start on the first large batch.

        Args:
            encryptor: the in-process encryptor; workers copy its public key and DJN base.
            decryptor: needed for :meth:`decrypt_vector`; its primes are sent to the workers.
            workers: number of worker processes.
            threshold: smallest vector handed to the pool.
            chunk_size: elements per task (default: about four tasks per worker).
            start_method: ``multiprocessing`` start method.

        Raises:
            LocalProtocolError: the decryptor belongs to another key, or ``workers < 1``.
        """
        if decryptor is not None and decryptor.public_key != encryptor.public_key:
            raise LocalProtocolError("encryptor and decryptor are for different keys")
        if workers < 1:
            raise LocalProtocolError("workers must be at least 1")
        self.encryptor = encryptor
        self.decryptor = decryptor
        self.workers = workers
        self.threshold = threshold
        self.chunk_size = chunk_size
        self._start_method = start_method
        self._pool: Executor | None = None

    def _executor(self) -> Executor:
        if self._pool is None:
            key = self.decryptor._key if self.decryptor is not None else None
            primes = (int(key.p), int(key.q)) if key is not None else None
            enc = self.encryptor
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context(self._start_method),
                initializer=_init_worker,
                initargs=(int(enc.public_key.n), int(enc.hs), enc.exponent_bits, enc.window_bits, primes),
            )
        return self._pool

    def _chunk_size(self, total: int) -> int:
        return self.chunk_size or max(1, -(-total // (4 * self.workers)))

    def encrypt_vector(
        self, values: npt.ArrayLike, *, exponent: int | None = None, precision: float | None = None
    ) -> EncryptedVector:
        """Like :meth:`Encryptor.encrypt_vector`, in the pool when the vector is large."""
        mantissas, chosen = self.encryptor.encode(values, exponent=exponent, precision=precision)
        return self.encrypt_mantissas(mantissas, chosen)

    def encrypt_mantissas(self, mantissas: list[int], exponent: int) -> EncryptedVector:
        """Like :meth:`Encryptor.encrypt_mantissas` (raw plaintexts in ``[0, n)``, e.g. packed ones)."""
        if len(mantissas) < self.threshold:
            return self.encryptor.encrypt_mantissas(mantissas, exponent)
        n = int(self.encryptor.public_key.n)
        if any(not 0 <= int(m) < n for m in mantissas):
            raise LocalProtocolError("raw plaintext must lie in [0, n)")
        parts = self._executor().map(_encrypt_chunk, _chunks(mantissas, self._chunk_size(len(mantissas))))
        cts = [c for part in parts for c in part]
        return EncryptedVector.from_ciphertexts(self.encryptor.public_key, cts, exponent)

    def decrypt_raw_vector(self, vector: EncryptedVector) -> list[int]:
        """Like :meth:`Decryptor.decrypt_raw_vector`, in the pool when the vector is large."""
        if self.decryptor is None:
            raise LocalProtocolError("this ParallelPaillier has no decryptor")
        if len(vector) < self.threshold:
            return self.decryptor.decrypt_raw_vector(vector)
        if vector.public_key != self.decryptor.public_key:
            raise LocalProtocolError("vector is under a different public key")
        cts = [int(c) for c in vector.ciphertexts]
        parts = self._executor().map(_decrypt_chunk, _chunks(cts, self._chunk_size(len(cts))))
        return [m for part in parts for m in part]

    def decrypt_vector(self, vector: EncryptedVector) -> npt.NDArray[np.float64]:
        """Like :meth:`Decryptor.decrypt_vector`, in the pool when the vector is large."""
        raw = self.decrypt_raw_vector(vector)
        pub = vector.public_key
        return decode_mantissas(signed_mantissas(raw, int(pub.n), int(pub.max_int)), vector.exponent)

    def dot(
        self,
        vector: EncryptedVector,
        matrix: npt.ArrayLike,
        *,
        exponent: int | None = None,
        precision: float | None = None,
    ) -> EncryptedVector:
        """Like :meth:`EncryptedVector.dot`, with the rows split over the pool when the vector is large.

        Each worker computes the Pippenger products of its rows for every column; the parent multiplies
        the partial products together (one multiplication per column and chunk).
        """
        arr = np.asarray(matrix)
        arr2 = arr.reshape(-1, 1) if arr.ndim == 1 else arr
        if len(vector) < self.threshold or arr2.ndim != 2 or arr2.shape[0] != len(vector):
            return vector.dot(matrix, exponent=exponent, precision=precision)
        if vector.public_key != self.encryptor.public_key:
            raise LocalProtocolError("vector is under a different public key")
        plain_exponent = choose_exponent(arr2, exponent=exponent, precision=precision)
        size = -(-len(vector) // self.workers)
        cts = [int(c) for c in vector.ciphertexts]
        futures = [
            self._executor().submit(_dot_chunk, cts[i : i + size], vector.exponent, arr2[i : i + size], plain_exponent)
            for i in range(0, len(cts), size)
        ]
        nsquare = mpz(vector.public_key.n) ** 2
        totals = [mpz(1)] * arr2.shape[1]
        for future in futures:
            totals = [t * mpz(p) % nsquare for t, p in zip(totals, future.result(), strict=True)]
        return EncryptedVector(vector.public_key, tuple(totals), vector.exponent + plain_exponent)

    def affine(
        self, vector: EncryptedVector, factors: npt.ArrayLike, offsets: npt.ArrayLike, *, factor_exponent: int
    ) -> EncryptedVector:
        """Return ``[[v_i * f_i + o_i]]`` with fresh randomness (so the result is unlinkable to ``vector``).

        Args:
            vector: the encrypted ``v``.
            factors: plaintext ``f`` (one per element), encoded at ``factor_exponent``.
            offsets: plaintext ``o``, encoded at the result's exponent ``vector.exponent + factor_exponent``.
            factor_exponent: fixed-point exponent of ``factors``.
        """
        if vector.public_key != self.encryptor.public_key:
            raise LocalProtocolError("vector is under a different public key")
        pub = vector.public_key
        n, max_int = int(pub.n), int(pub.max_int)
        out_exponent = vector.exponent + factor_exponent
        f = np.asarray(factors)
        o = np.asarray(offsets)
        if f.shape != (len(vector),) or o.shape != (len(vector),):
            raise LocalProtocolError("factors and offsets must have one value per element")
        fm = [m - n if m > n // 2 else m for m in encode_mantissas(f, factor_exponent, n, max_int)]
        om = encode_mantissas(o, out_exponent, n, max_int)
        cts = [int(c) for c in vector.ciphertexts]
        if len(cts) < self.threshold:
            result = _affine(self.encryptor, cts, fm, om)
            return EncryptedVector(pub, tuple(result), out_exponent)
        size = self._chunk_size(len(cts))
        parts = self._executor().map(_affine_chunk, _chunks(cts, size), _chunks(fm, size), _chunks(om, size))
        return EncryptedVector.from_ciphertexts(pub, [c for part in parts for c in part], out_exponent)

    def close(self) -> None:
        """Shut the worker processes down (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> ParallelPaillier:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
