"""A restarted coordinator starts its SuperLink only once the previous SuperLink process has ended.

The previous process stops answering ``/health`` at once but lives on while its connections drain, with
its SuperExec polling the same port; ``previous_gone`` waits for the process itself (named in the state
directory's pid file), and kills one that outlives the wait. Real processes, no mocks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from coordinator.flower.superlink import PID_FILE, _start_time, previous_gone

# a process whose command line names the SuperLink's module, as the real one does
_LINGER = "import sys, time; time.sleep(float(sys.argv[1]))"


def _lingering(seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _LINGER, str(seconds), "coordinator.flower.control_gate"])


def test_it_waits_for_a_previous_superlink_that_is_still_ending(tmp_path: Path) -> None:
    old = _lingering(60)
    (tmp_path / PID_FILE).write_text(f"{old.pid} {_start_time(old.pid)}\n")
    ended = threading.Event()
    reaper = threading.Thread(target=lambda: (old.wait(), ended.set()), daemon=True)  # as init would reap it
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (previous_gone(tmp_path / PID_FILE, timeout=120), done.set()))
    waiter.start()
    reaper.start()
    time.sleep(1.0)
    assert not done.is_set(), "it returned while the previous SuperLink still ran"
    old.terminate()  # the old process finishes its shutdown
    waiter.join(timeout=30)
    assert done.is_set() and ended.is_set()


def test_one_that_outlives_the_wait_is_killed(tmp_path: Path) -> None:
    old = _lingering(600)
    (tmp_path / PID_FILE).write_text(f"{old.pid} {_start_time(old.pid)}\n")
    reaper = threading.Thread(target=old.wait, daemon=True)
    reaper.start()
    previous_gone(tmp_path / PID_FILE, timeout=1.0)
    reaper.join(timeout=30)
    assert old.returncode == -9


def test_a_pid_that_is_not_a_superlink_is_left_alone(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", _LINGER, "600"])  # a reused pid: some other program
    another = _lingering(600)  # a reused pid: another deployment's SuperLink, started after the file was written
    try:
        (tmp_path / PID_FILE).write_text(f"{other.pid} {_start_time(other.pid)}\n")
        previous_gone(tmp_path / PID_FILE, timeout=1.0)
        assert other.poll() is None
        (tmp_path / PID_FILE).write_text(f"{another.pid} {int(_start_time(another.pid)) - 1}\n")
        previous_gone(tmp_path / PID_FILE, timeout=1.0)
        assert another.poll() is None
        (tmp_path / PID_FILE).write_text("not a pid\n")
        previous_gone(tmp_path / PID_FILE, timeout=1.0)  # an unreadable file: nothing to wait for
        previous_gone(tmp_path / "missing.pid", timeout=1.0)
    finally:
        for proc in (other, another):
            proc.kill()
            proc.wait()
    assert os.path.exists(tmp_path / PID_FILE)
