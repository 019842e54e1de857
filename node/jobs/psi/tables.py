"""The sender's labeled-PSI tables, prepared once per key epoch and reused across recovery jobs.

Layout under the node's state directory (``<state>/psi``, mode 0700)::

    epoch.json                              {"epoch": "<id>", "created_at": "..."}: the current epoch
    epochs/<id>/oprf.key                    the epoch's OPRF key k (32 bytes, mode 0600). SECRET.
    epochs/<id>/<key_type>-<digest16>.table a SenderTable (``psi.engine.save_table``)

Key values shared by more than ``psi.labeled.MAX_LABELS_PER_KEY`` subscribers' numbers are taken
out first (``psi.labeled.refuse_shared_keys``) and counted in :attr:`PreparedTable.shared`, every
time, whether the table is built or reused; the table holds only the kept records.

A table is a deterministic function of (records, k), so it is looked up by the SHA-256 of the
table format and the ``(key, label)`` records it was built from (:func:`records_digest`): a
recovery job over unchanged subscriber data reuses the epoch's table and only evaluates the
receiver's queries online. Rotating the epoch (:meth:`TableStore.rotate`) makes a new key; old
tables are left for the operator to delete.

Why epochs: anyone who ever learns k can test identifiers against every table built with it, and a
receiver sees the same tags for the same identifier in every job of one epoch (so it can tell that
a record is unchanged between two jobs). Rotate at least as often as the data-sharing agreement says.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from protocols.wire.control import KeyType
from psi import BatchMapper, serial_map
from psi.engine import load_table, save_table
from psi.group import Scalar
from psi.labeled import KDF_KEY, SenderTable, SharedKeys, prepare_sender_table, refuse_shared_keys

__all__ = ["PreparedTable", "TableStore", "records_digest"]

_DIGEST_BLOCK = 65536


@dataclass(frozen=True)
class PreparedTable:
    """A table ready to serve, how it was obtained, and the shared key values left out of it."""

    table: SenderTable
    key: Scalar
    epoch: str
    reused: bool
    seconds: float
    shared: SharedKeys = SharedKeys()


def records_digest(key_type: KeyType, records: Sequence[tuple[str, str]]) -> str:
    """SHA-256 that names the table built from ``records`` (hex).

    The hashed bytes are the UTF-8 of: the table format (``psi.labeled.KDF_KEY``) and the key type,
    one line each, then every record as ``key TAB label LF`` in order. Records are joined and fed in
    blocks of 65,536 (≈0.1 µs a record instead of ≈1 µs); the blocking does not change the value.
    A new record derivation changes ``KDF_KEY``, so it never reuses a table of the old format.
    """
    h = hashlib.sha256(KDF_KEY + b"\n" + f"{KeyType(key_type).value}\n".encode())
    for start in range(0, len(records), _DIGEST_BLOCK):
        block = records[start : start + _DIGEST_BLOCK]
        h.update(("\n".join(map("\t".join, block)) + "\n").encode())
    return h.hexdigest()


class TableStore:
    """Per-epoch OPRF keys and the tables built with them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _epoch_dir(self, epoch: str) -> Path:
        return self.root / "epochs" / epoch

    def current_epoch(self) -> str:
        """The current epoch id, creating the first epoch if there is none."""
        path = self.root / "epoch.json"
        if not path.exists():
            return self.rotate()
        return str(json.loads(path.read_text())["epoch"])

    def rotate(self) -> str:
        """Start a new epoch with a fresh OPRF key; return its id."""
        epoch = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
        folder = self._epoch_dir(epoch)
        folder.mkdir(parents=True, mode=0o700)
        key_path = folder / "oprf.key"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Scalar.random().to_bytes())
        tmp = self.root / "epoch.json.tmp"
        tmp.write_text(json.dumps({"epoch": epoch, "created_at": dt.datetime.now(dt.UTC).isoformat()}))
        tmp.replace(self.root / "epoch.json")
        return epoch

    def key(self, epoch: str) -> Scalar:
        """The OPRF key of ``epoch``. **Secret**: never log or send it."""
        return Scalar((self._epoch_dir(epoch) / "oprf.key").read_bytes())

    def table(self, key_type: KeyType, records: Sequence[tuple[str, str]], *,
              mapper: BatchMapper = serial_map) -> PreparedTable:
        """The current epoch's table for these records, shared key values left out (counted in ``shared``).

        Loaded if already built, else built and saved: with a mapper that offers ``table_file``
        (the spark engine's :class:`node.spark.SparkMapper`) the whole build runs as Spark jobs
        (``node.spark.build_table``), else ``prepare_sender_table`` maps its batches over ``mapper``.
        """
        start = time.perf_counter()
        records, shared = refuse_shared_keys(records)
        epoch = self.current_epoch()
        key = self.key(epoch)
        path = self._epoch_dir(epoch) / f"{KeyType(key_type).value}-{records_digest(key_type, records)[:16]}.table"
        if path.exists():
            table = load_table(path)
            return PreparedTable(table, key, epoch, True, time.perf_counter() - start, shared)
        table_file = getattr(mapper, "table_file", None)  # the spark engine: node.spark.build_table on the cluster
        if table_file is not None:
            table_file(records, key_type, key, path)  # writes path atomically
            table = load_table(path)
        else:
            table = prepare_sender_table(records, key_type=key_type, key=key, mapper=mapper)
            tmp = path.with_suffix(".partial")
            save_table(table, tmp)
            tmp.replace(path)
        return PreparedTable(table, key, epoch, False, time.perf_counter() - start, shared)
