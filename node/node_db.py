"""The node's local SQLite file (``state_dir/node.db``): one connection recipe for every table in it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["NODE_DB", "connect"]

NODE_DB = "node.db"


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` for use from several threads (callers serialise with their own lock).

    Autocommit mode (``isolation_level=None``) so callers open explicit ``BEGIN IMMEDIATE``
    transactions, which also serialise writers across processes; WAL lets readers run meanwhile.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn
