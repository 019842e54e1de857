"""Per-batch PSI work as pure functions over packed arrays, and the mapper seam that parallelises them.

A *batch* is a list of canonical identifiers or a packed array of 32-byte encodings. The functions
here are module-level so that a process pool (or a cluster engine such as Spark ``mapInPandas``) can
map them; sessions call them through a :class:`BatchMapper`, which defaults to :func:`serial_map`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from psi import _ristretto
from psi._errors import InvalidPoint
from psi.group import POINT_BYTES, Scalar, hash_to_group_batch, multiply_batch

__all__ = [
    "BatchMapper",
    "blind_batch",
    "evaluate_batch",
    "hash_to_group_batch",
    "map_blind",
    "map_evaluate",
    "serial_map",
]

SUB_BATCH = 2048
MIN_SUB_BATCH = 128


def _step(n: int) -> int:
    """Sub-batch size: at most 2,048, and small enough to give a pool about eight tasks per call."""
    return max(1, min(SUB_BATCH, max(MIN_SUB_BATCH, -(-n // 8))))


class BatchMapper(Protocol):
    """Applies ``fn(*args)`` to every tuple in ``arg_tuples`` and returns the results in order."""

    def __call__(self, fn: Callable[..., bytes], arg_tuples: Sequence[tuple[Any, ...]]) -> list[bytes]:
        """Map ``fn`` over the argument tuples."""
        ...


def serial_map(fn: Callable[..., bytes], arg_tuples: Sequence[tuple[Any, ...]]) -> list[bytes]:
    """The in-process mapper: a plain loop."""
    return [fn(*args) for args in arg_tuples]


def blind_batch(key_type: str, values: Sequence[str], scalar: Scalar) -> bytes:
    """``scalar · H(value)`` for every value, packed. Hash outputs are valid by construction."""
    return _ristretto.scalarmult_many(scalar.to_bytes(), hash_to_group_batch(key_type, values))


def evaluate_batch(points: bytes, scalar: Scalar) -> bytes:
    """``scalar · P`` for every packed peer-supplied element, validated (raises :class:`InvalidPoint`)."""
    return multiply_batch(scalar, points)


def map_blind(mapper: BatchMapper, key_type: str, values: Sequence[str], scalar: Scalar) -> bytes:
    """:func:`blind_batch` over ``values`` split into sub-batches for ``mapper``."""
    step = _step(len(values))
    parts = [(key_type, values[i : i + step], scalar) for i in range(0, len(values), step)]
    return b"".join(mapper(blind_batch, parts))


def map_evaluate(mapper: BatchMapper, points: bytes, scalar: Scalar) -> bytes:
    """:func:`evaluate_batch` over ``points`` split into sub-batches; error indices are global."""
    step = _step(len(points) // POINT_BYTES) * POINT_BYTES
    if len(points) % POINT_BYTES:
        raise InvalidPoint(len(points) // POINT_BYTES)
    starts = list(range(0, len(points), step))
    try:
        return b"".join(mapper(evaluate_batch, [(points[s : s + step], scalar) for s in starts]))
    except InvalidPoint:
        return evaluate_batch(points, scalar)  # re-run serially to name the global index; raises
