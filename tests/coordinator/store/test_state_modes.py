"""The coordinator's state (database, audit key, signed heads) is private to its user, on a real process.

A fresh state directory is created 0700 and every file in it 0600 (SQLite's WAL and shared-memory files
included); a state directory others can read or write is refused at start-up with the path and the
``chmod`` that fixes it, before anything is written into it.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.support.live_coordinator import LiveCoordinator


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fresh_state_is_private(tmp_path):
    live = LiveCoordinator(tmp_path / "state")  # does not exist yet: the coordinator creates it
    try:
        assert live.start() is None, live.output()
    finally:
        live.stop()
    files = sorted(p.name for p in live.state_dir.iterdir())
    assert {"coord.db", "coord.key", "audit_heads.json"} <= set(files)
    modes = {name: oct(_mode(live.state_dir / name)) for name in files}
    print(f"state dir {oct(_mode(live.state_dir))}, files {modes}")
    assert _mode(live.state_dir) == 0o700
    assert set(modes.values()) == {oct(0o600)}


@pytest.mark.parametrize("mode", [0o777, 0o755, 0o750])
def test_a_state_dir_open_to_others_is_refused(tmp_path, mode):
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    live = LiveCoordinator(state)
    assert live.start() == 2
    refusal = live.output()
    assert f"state directory {state} is open to other users (mode {mode:o})" in refusal
    assert f"chmod 700 {state}" in refusal and "Traceback" not in refusal
    assert list(state.iterdir()) == []  # refused before the key or the database was written
    print(f"mode {mode:o}:", refusal.strip().splitlines()[-1])


def test_a_database_left_readable_by_an_earlier_version_is_tightened(tmp_path):
    live = LiveCoordinator(tmp_path / "state")
    try:
        assert live.start() is None, live.output()
        live.stop()
        live.db.chmod(0o644)
        assert live.start() is None, live.output()
    finally:
        live.stop()
    assert _mode(live.db) == 0o600
