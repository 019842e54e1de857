"""Local node state in ``node.db``: which coordinator dataset is which local source, and a job journal.

The coordinator knows a dataset by id and schema only; the node alone knows where its rows live.
``LocalDatasets`` maps coordinator dataset id → source URI + governance file (filled by
``register-dataset``). ``JobJournal`` remembers what the node did with each job and attempt (started,
refused, waiting, succeeded, failed) so the runner neither repeats work nor repeats notices; a job the
coordinator retried comes back with a higher attempt and is run again.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path

from node.node_db import connect
from protocols.wire.errors import ConfigError

__all__ = ["JobJournal", "JobRecord", "LocalDataset", "LocalDatasets"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS local_datasets (
        dataset_id INTEGER PRIMARY KEY, name TEXT NOT NULL, source_uri TEXT NOT NULL,
        governance_path TEXT NOT NULL, registered_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS job_journal (
        job_id INTEGER PRIMARY KEY, state TEXT NOT NULL, detail TEXT NOT NULL, updated_at TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1)""",
)
_ADDED_COLUMNS = (("job_journal", "attempt", "INTEGER NOT NULL DEFAULT 1"),)
"""Columns added after a table was first created (``CREATE TABLE IF NOT EXISTS`` leaves old tables as they are)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LocalDataset:
    """Where a catalogued dataset's rows live on this node."""

    dataset_id: int
    name: str
    source_uri: str
    governance_path: Path


@dataclass(frozen=True)
class JobRecord:
    """The node's own note about a job."""

    job_id: int
    state: str
    detail: str
    attempt: int = 1


class _Table:
    def __init__(self, db_path: Path) -> None:
        self._conn = connect(db_path)
        for stmt in _SCHEMA:
            self._conn.execute(stmt)
        for table, column, sql_type in _ADDED_COLUMNS:
            if column not in {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()


class LocalDatasets(_Table):
    """Coordinator dataset id → local source."""

    def put(self, dataset_id: int, name: str, source_uri: str, governance_path: Path) -> None:
        """Remember (or update) where dataset ``dataset_id`` lives."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO local_datasets VALUES (?, ?, ?, ?, ?)",
                (dataset_id, name, source_uri, str(governance_path.resolve()), _now()),
            )

    def get(self, dataset_id: int) -> LocalDataset:
        """Look up a dataset this node registered.

        Raises:
            ConfigError: if this node never registered ``dataset_id``.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT dataset_id, name, source_uri, governance_path FROM local_datasets WHERE dataset_id = ?",
                (dataset_id,),
            ).fetchone()
        if row is None:
            raise ConfigError(f"dataset {dataset_id} is not registered on this node; run `register-dataset`")
        return LocalDataset(int(row[0]), str(row[1]), str(row[2]), Path(row[3]))

    def has(self, dataset_id: int) -> bool:
        """Whether this node registered ``dataset_id``."""
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM local_datasets WHERE dataset_id = ?", (dataset_id,)).fetchone()
        return row is not None

    def all(self) -> list[LocalDataset]:
        """Every dataset this node registered, by id."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT dataset_id, name, source_uri, governance_path FROM local_datasets ORDER BY dataset_id"
            ).fetchall()
        return [LocalDataset(int(r[0]), str(r[1]), str(r[2]), Path(r[3])) for r in rows]


class JobJournal(_Table):
    """What this node did with each job."""

    def get(self, job_id: int) -> JobRecord | None:
        """The node's note on ``job_id``, if any."""
        with self._lock:
            row = self._conn.execute(
                "SELECT job_id, state, detail, attempt FROM job_journal WHERE job_id = ?", (job_id,)
            ).fetchone()
        return None if row is None else JobRecord(int(row[0]), str(row[1]), str(row[2]), int(row[3]))

    def set(self, job_id: int, state: str, detail: str = "", *, attempt: int = 1) -> None:
        """Record the node's current note on ``job_id`` (about its ``attempt``)."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO job_journal (job_id, state, detail, updated_at, attempt) "
                "VALUES (?, ?, ?, ?, ?)",
                (job_id, state, detail, _now(), attempt),
            )
