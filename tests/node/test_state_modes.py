"""A node's state (keys, node.db) is private to its user, through the real ``python -m bank_node`` CLI.

``init`` against a real coordinator creates the state directory 0700 and every file in it 0600; a
state directory others can read or write is refused by every command with the path and the ``chmod``.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.node_db import connect
from tests.support.coordinator import World
from tests.support.live_coordinator import ROOT, LiveCoordinator


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory) -> Iterator[tuple[LiveCoordinator, World]]:
    live = LiveCoordinator(tmp_path_factory.mktemp("coord") / "state")
    assert live.start() is None, live.output()
    try:
        with live.client() as client:
            yield live, World(client).populate()
    finally:
        live.stop()


def _bank(state: Path, live: LiveCoordinator, world: World, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TANDEM_BANK_STATE_DIR": str(state), "TANDEM_BANK_COORDINATOR_URL": live.url,
           "TANDEM_BANK_API_TOKEN": world.tokens["bank_admin"], "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bank_node", *args], env=env, cwd=state.parent,
                          capture_output=True, text=True, timeout=120, check=False)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_private_state_and_a_loose_state_dir_is_refused(coordinator, tmp_path):
    live, world = coordinator
    state = tmp_path / "bank"
    init = _bank(state, live, world, "init")
    assert init.returncode == 0, init.stderr
    files = {p.name: oct(_mode(p)) for p in state.iterdir() if p.is_file()}
    print(f"node state dir {oct(_mode(state))}, files {files}")
    assert _mode(state) == 0o700 and "node.db" in files and set(files.values()) == {oct(0o600)}

    state.chmod(0o777)
    refused = _bank(state, live, world, "ledger", "verify")
    assert refused.returncode == 2
    assert f"state directory {state} is open to other users (mode 777)" in refused.stderr
    assert f"chmod 700 {state}" in refused.stderr and "Traceback" not in refused.stderr
    print("mode 777:", refused.stderr.strip())


_PROBE = """import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
try:
    conn.execute("PRAGMA journal_mode=DELETE")
    print(conn.execute("PRAGMA journal_mode").fetchone()[0])
except sqlite3.OperationalError as exc:
    print(exc)
"""


def test_opening_node_db_again_keeps_the_locks_of_open_connections(tmp_path):
    """Making node.db private must not close a descriptor of it: that drops every lock the process holds."""
    db = tmp_path / "node.db"
    reader = connect(db)
    reader.execute("CREATE TABLE t (x)")
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM t").fetchall()  # a read transaction in progress
    second = connect(db)  # another table's connection, opened meanwhile (the outbox at a job's start)
    probe = subprocess.run([sys.executable, "-c", _PROBE, str(db)], capture_output=True, text=True, timeout=60,
                           check=True)
    print("another process switching the journal mode under a reader:", probe.stdout.strip())
    assert probe.stdout.strip() == "database is locked"
    reader.close()
    second.close()
