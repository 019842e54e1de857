"""The node's local SQLite file (``state_dir/node.db``): one connection recipe for every table in it.

The state directory holds the node's keys, ledger and job journal, so it must be private to the node's
user: ``connect`` creates it with mode 0700 and refuses one that group or others may read or write
(naming the directory and the ``chmod`` that fixes it). ``node.db`` is created with mode 0600 (SQLite
gives its WAL and shared-memory files the database's mode); one left 0644 by an earlier version is
tightened to 0600.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from pathlib import Path

from protocols.wire.errors import ConfigError

__all__ = ["NODE_DB", "connect", "private_dir"]

NODE_DB = "node.db"
_SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def private_dir(directory: Path) -> None:
    """Create ``directory`` with mode 0700 if missing; refuse it if group or others have any access.

    Raises:
        ConfigError: naming the directory, its mode and the fix.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"state directory {directory} is open to other users (mode {mode:o}): it holds the "
                          f"node's keys, egress ledger and job journal. Fix: chmod 700 {directory}")


def _private_db_file(path: Path) -> None:
    """Create ``path`` 0600 if missing, else tighten it (and its WAL files) by name.

    An existing database is never opened here: closing any descriptor of a file drops the POSIX locks
    that this process's other SQLite connections hold on it.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for suffix in _SQLITE_SUFFIXES:
        item = path.with_name(path.name + suffix)
        if item.exists() and item.stat().st_mode & 0o077:
            item.chmod(0o600)


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` for use from several threads (callers serialise with their own lock).

    Autocommit mode (``isolation_level=None``) so callers open explicit ``BEGIN IMMEDIATE``
    transactions, which also serialise writers across processes; WAL lets readers run meanwhile.

    Raises:
        ConfigError: the directory of ``path`` is open to other users (see the module docstring).
    """
    private_dir(path.parent)
    _private_db_file(path)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn
