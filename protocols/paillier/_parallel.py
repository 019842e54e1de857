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

import numpy as np
import numpy.typing as npt
import phe

from protocols.errors import LocalProtocolError
from protocols.paillier._decryptor import Decryptor
from protocols.paillier._encoding import decode_mantissas, signed_mantissas
from protocols.paillier._encryptor import Encryptor
from protocols.paillier._primitives import CrtKey, crt_decrypt
from protocols.paillier._vector import EncryptedVector

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
        if len(mantissas) < self.threshold:
            return self.encryptor.encrypt_mantissas(mantissas, chosen)
        parts = self._executor().map(_encrypt_chunk, _chunks(mantissas, self._chunk_size(len(mantissas))))
        cts = [c for part in parts for c in part]
        return EncryptedVector.from_ciphertexts(self.encryptor.public_key, cts, chosen)

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
