"""Batch engine: process-pool mapping, streaming to and from disk, and the one-process driver.

* :class:`ProcessPoolMapper` maps the pure per-batch functions of :mod:`psi._batch` over a process
  pool (both cores by default); sessions take it as ``mapper=``. Work is split into sub-batches of
  2,048 elements, and at most one chunk (65,536 elements) is in flight per session, which bounds memory.
* :func:`blind_file`, :func:`iter_identifier_batches`, :func:`write_packed`, :func:`iter_packed`,
  :func:`save_table` and :func:`load_table` are the only functions in ``psi`` that touch files, and
  only the paths they are given.
* :func:`run_local` plays both parties in one process, passing every message through the wire codec
  and counting the bytes each way. It is the first integration test and what the benchmark times.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from protocols.wire.control import KeyType
from protocols.wire.psi import OutputTo, decode_frame, encode_frame
from psi._batch import BatchMapper, blind_batch, evaluate_batch, hash_to_group_batch, serial_map
from psi._session import Message, RandomSource, Session
from psi.cardinality import CardinalityReceiver, CardinalitySender
from psi.ecdh import EcdhPsiReceiver, EcdhPsiSender
from psi.group import POINT_BYTES, Scalar
from psi.identifiers import NormalisedColumn, normalise_column
from psi.labeled import LabeledPsiReceiver, LabeledPsiSender, SenderTable, prepare_sender_table, refuse_shared_keys
from psi.multi_key import DEFAULT_PRIORITY, MultiKeyMatcher, MultiKeyResult

__all__ = [
    "LocalRun",
    "Mode",
    "ProcessPoolMapper",
    "blind_batch",
    "blind_file",
    "evaluate_batch",
    "hash_to_group_batch",
    "iter_identifier_batches",
    "iter_packed",
    "load_table",
    "run_local",
    "run_multi_key_local",
    "save_table",
    "table_header",
    "write_packed",
]

Mode = Literal["intersection", "intersection_to_sender", "cardinality", "labeled"]


def _apply(job: tuple[Callable[..., bytes], tuple[Any, ...]]) -> bytes:
    fn, args = job
    return fn(*args)


class ProcessPoolMapper:
    """A :class:`~psi._batch.BatchMapper` over a process pool. Use as a context manager.

    Args:
        workers: Worker processes (default 2, the cores we budget for).
        start_method: ``"fork"`` (fast; for single-threaded drivers such as the benches and the local
            CLI) or ``"forkserver"``/``"spawn"`` (for a multi-threaded process such as a node, where
            forking could copy a lock held by another thread).
    """

    def __init__(self, workers: int = 2, start_method: str = "fork") -> None:
        """Start the pool (workers are created lazily by the executor)."""
        context = multiprocessing.get_context(start_method)
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)

    def __call__(self, fn: Callable[..., bytes], arg_tuples: Sequence[tuple[Any, ...]]) -> list[bytes]:
        """Map ``fn`` over the argument tuples in the pool, preserving order."""
        if len(arg_tuples) <= 1:
            return serial_map(fn, arg_tuples)
        return list(self._pool.map(_apply, [(fn, args) for args in arg_tuples]))

    def close(self) -> None:
        """Shut the pool down."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ProcessPoolMapper:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


# ---------------------------------------------------------------- streaming helpers (file paths only)


def iter_identifier_batches(path: str | Path, batch: int = 65536) -> Iterator[list[str]]:
    """Read one raw identifier per line from ``path``, ``batch`` lines at a time."""
    with open(path, encoding="utf-8") as handle:
        chunk: list[str] = []
        for line in handle:
            chunk.append(line.rstrip("\r\n"))
            if len(chunk) == batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def write_packed(path: str | Path, chunks: Iterable[bytes]) -> int:
    """Append-free write of packed chunks to ``path``; returns the bytes written."""
    written = 0
    with open(path, "wb") as handle:
        for chunk in chunks:
            written += handle.write(chunk)
    return written


def iter_packed(path: str | Path, element_size: int = POINT_BYTES, chunk_elements: int = 65536) -> Iterator[bytes]:
    """Read packed fixed-size elements back from ``path`` in chunks of ``chunk_elements``."""
    with open(path, "rb") as handle:
        while block := handle.read(element_size * chunk_elements):
            if len(block) % element_size:
                raise ValueError("file is not a whole number of elements")
            yield block


def blind_file(
    in_path: str | Path,
    out_path: str | Path,
    *,
    key_type: KeyType,
    scalar: Scalar,
    mapper: BatchMapper = serial_map,
    batch: int = 65536,
) -> NormalisedColumn:
    """Stream identifiers from ``in_path``, normalise, blind and write packed points to ``out_path``.

    Memory stays at one batch. Invalid identifiers are skipped and counted in the returned column
    (whose ``values`` and ``indices`` are left empty to stay bounded).
    """
    from collections import Counter

    invalid: Counter[tuple[str, str]] = Counter()
    total = 0

    def blinded() -> Iterator[bytes]:
        nonlocal total
        for raw in iter_identifier_batches(in_path, batch):
            column = normalise_column(key_type, raw)
            total += column.total
            invalid.update(column.invalid)
            step = 8192
            parts = [(str(key_type), column.values[i : i + step], scalar) for i in range(0, len(column.values), step)]
            yield b"".join(mapper(blind_batch, parts))

    write_packed(out_path, blinded())
    return NormalisedColumn(KeyType(key_type), [], [], invalid, total)


def table_header(key_type: KeyType | str, key_id: str, record_size: int) -> bytes:
    """The header line of a table file (:func:`save_table`); a writer that streams records writes it first."""
    header = {"key_type": str(KeyType(key_type)), "key_id": key_id, "record_size": record_size}
    return json.dumps(header).encode() + b"\n"


def save_table(table: SenderTable, path: str | Path) -> None:
    """Write a labeled-PSI table: one JSON header line, then the packed records."""
    with open(path, "wb") as handle:
        handle.write(table_header(table.key_type, table.key_id, table.record_size))
        handle.write(table.records)


def load_table(path: str | Path) -> SenderTable:
    """Read a table written by :func:`save_table`."""
    with open(path, "rb") as handle:
        header = json.loads(handle.readline())
        records = handle.read()
    if len(records) % header["record_size"]:
        raise ValueError("table file is truncated")
    return SenderTable(KeyType(header["key_type"]), header["key_id"], header["record_size"], records)


# ---------------------------------------------------------------- one-process driver


@dataclass
class LocalRun:
    """What :func:`run_local` returns.

    Attributes:
        receiver: The receiver session's ``result()``.
        sender: The sender session's ``result()``.
        bytes_r2s: Frame bytes receiver → sender.
        bytes_s2r: Frame bytes sender → receiver.
        round_trips: Request/reply pairs.
        receiver_report: Normalisation report of the receiver's input.
        sender_report: Normalisation report of the sender's input.
    """

    receiver: Any
    sender: Any
    bytes_r2s: int = 0
    bytes_s2r: int = 0
    round_trips: int = 0
    receiver_report: dict[str, object] = field(default_factory=dict)
    sender_report: dict[str, object] = field(default_factory=dict)


def _loop(receiver: Session, sender: Session, first: Message, run: LocalRun) -> None:
    message: Message | None = first
    while message is not None:
        frame = encode_frame(message)
        run.bytes_r2s += len(frame)
        reply = sender.handle(decode_frame(frame))
        if reply is None:
            break
        frame = encode_frame(reply)
        run.bytes_s2r += len(frame)
        run.round_trips += 1
        message = receiver.handle(decode_frame(frame))


def run_local(
    receiver_values: Iterable[str | None],
    sender_values: Iterable[str | None] | Mapping[str, str] | Iterable[tuple[str, str]],
    mode: Mode = "intersection",
    *,
    key_type: KeyType = KeyType.MOBILE,
    job_id: str = "local",
    chunk_size: int = 65536,
    epsilon: float | None = None,
    mapper: BatchMapper = serial_map,
    rng: RandomSource | None = None,
) -> LocalRun:
    """Run both parties of one PSI mode in this process, through the wire codec.

    Args:
        receiver_values: The receiver's raw identifiers (normalised here; invalid ones are counted).
        sender_values: The sender's raw identifiers; for ``"labeled"``, ``(key, label)`` pairs or a mapping.
        mode: ``"intersection"`` (receiver learns X∩Y), ``"intersection_to_sender"``,
            ``"cardinality"`` or ``"labeled"``.
        key_type: Identifier kind of both columns.
        job_id: Job id bound into the messages.
        chunk_size: Elements per chunk.
        epsilon: DP noise on the released count (cardinality only).
        mapper: Parallelises the group work (e.g. :class:`ProcessPoolMapper`).
        rng: Randomness for shuffles and noise (OS CSPRNG by default).
    """
    receiver_column = normalise_column(key_type, receiver_values)
    common: dict[str, Any] = {"key_type": key_type, "job_id": job_id, "chunk_size": chunk_size, "mapper": mapper}
    receiver, sender, sender_report = _make_parties(receiver_column.values, sender_values, mode, common, epsilon, rng)
    run = LocalRun(None, None, receiver_report=receiver_column.report(), sender_report=sender_report)
    _loop(receiver, sender, receiver.start(), run)  # type: ignore[attr-defined]
    run.receiver, run.sender = receiver.result(), sender.result()  # type: ignore[attr-defined]
    return run


def _make_parties(
    receiver_values: list[str],
    sender_values: Any,
    mode: Mode,
    common: dict[str, Any],
    epsilon: float | None,
    rng: RandomSource | None,
) -> tuple[Session, Session, dict[str, object]]:
    key_type = common["key_type"]
    if mode == "labeled":
        pairs = sender_values.items() if isinstance(sender_values, Mapping) else sender_values
        table, report = _labeled_table(pairs, key_type, common["mapper"])
        return (
            LabeledPsiReceiver(receiver_values, rng=rng, **common),
            LabeledPsiSender(table[0], key=table[1], **{k: v for k, v in common.items() if k != "key_type"}),
            report,
        )
    column = normalise_column(key_type, sender_values)
    if mode == "cardinality":
        return (
            CardinalityReceiver(receiver_values, epsilon=epsilon, rng=rng, **common),
            CardinalitySender(column.values, rng=rng, **common),
            column.report(),
        )
    output = OutputTo.SENDER if mode == "intersection_to_sender" else OutputTo.RECEIVER
    return (
        EcdhPsiReceiver(receiver_values, output_to=output, rng=rng, **common),
        EcdhPsiSender(column.values, output_to=output, rng=rng, **common),
        column.report(),
    )


def _labeled_table(
    pairs: Iterable[tuple[str, str]], key_type: KeyType, mapper: BatchMapper
) -> tuple[tuple[SenderTable, Scalar], dict[str, object]]:
    pairs = list(pairs)
    column = normalise_column(key_type, [k for k, _ in pairs])
    records, shared = refuse_shared_keys([(value, pairs[i][1]) for value, i in zip(column.values, column.indices,
                                                                                    strict=True)])
    report = column.report()
    if shared.values:
        report["shared_key_values"] = {"key_values": shared.values, "records": shared.records}
    key = Scalar.random()
    return (prepare_sender_table(records, key_type=key_type, key=key, mapper=mapper), key), report


def run_multi_key_local(
    customers: Sequence[Mapping[KeyType, str | None]],
    sender_records: Mapping[KeyType, Iterable[tuple[str, str]]],
    *,
    priority: Sequence[KeyType] = DEFAULT_PRIORITY,
    job_id: str = "local",
    mapper: BatchMapper = serial_map,
) -> MultiKeyResult:
    """Multi-key recovery in one process: one labeled-PSI run per key type, in priority order.

    Args:
        customers: The receiver's customers (key type → raw identifier).
        sender_records: Per key type, the sender's ``(raw key, label)`` records.
        priority: Key types in the order they are tried.
        job_id: Job id bound into the messages.
        mapper: Parallelises the group work.
    """
    matcher = MultiKeyMatcher(customers, priority)
    while (query := matcher.next_query()) is not None:
        key_type, values = query
        raw_pairs = sender_records.get(key_type, [])
        run = run_local(values, raw_pairs, "labeled", key_type=key_type, job_id=job_id, mapper=mapper)
        matcher.add_results(key_type, run.receiver.labels)
    return matcher.result()
