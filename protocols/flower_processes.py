"""Flower's processes as children of a Tandem service: environment, start, wait, stop with descendants.

The coordinator runs the SuperLink (:mod:`coordinator.flower.superlink`), each node its SuperNode
(:mod:`node.flower.supernode`), and the local federation both (:mod:`demo.federation`). They share this
one module for what is the same in all three: the offline Flower environment (telemetry and update
checks off, no runtime dependency installation), a child in its own session with its log file that dies
with its parent, and a stop that reaches the process's descendants (SuperExecs, ServerApp and ClientApp
processes) even once they were re-parented.

This is the one module of ``protocols`` that touches the operating system. It holds no protocol and no
data, no pure module imports it (``tests/test_layers.py`` checks), and nothing here learns anything of
any party: it only runs processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "SUPEREXEC_POLL_ENV",
    "ChildProcess",
    "FederationError",
    "ProcessGroup",
    "alive",
    "die_with_parent",
    "flower_env",
    "free_port",
]

SUPEREXEC_POLL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"
_BASE_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "PYTHONUNBUFFERED": "1",
}


class FederationError(RuntimeError):
    """A component failed to start, connect, or answer in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def flower_env(flwr_home: Path, poll_interval: float | None = None,
               extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a Flower process: ours without ``FLWR_*``, offline settings, its own home.

    Args:
        flwr_home: The process's ``FLWR_HOME``.
        poll_interval: SuperExec poll interval in seconds; None keeps Flower's.
        extra: More variables, set last.
    """
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLWR_")}
    env.update(_BASE_ENV)
    env["FLWR_HOME"] = str(flwr_home)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    if poll_interval is not None:
        env[SUPEREXEC_POLL_ENV] = str(poll_interval)
    env.update(extra or {})
    return env


def die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM the child when its parent dies (PR_SET_PDEATHSIG).

    The Flower processes run in their own sessions so that they can be stopped as a group; without this
    hook a parent killed before its clean-up (SIGKILL, a crash) would leave them running and polling.
    Only used from the main thread: the kernel ties the signal to the creating thread's lifetime.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)

    def hook() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return hook


def _descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (Linux /proc), children first."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.append(child)
                    frontier.append(child)
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@dataclass
class ChildProcess:
    """One process a :class:`ProcessGroup` started."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    known_pids: set[int] = field(default_factory=set)

    def remember_descendants(self) -> None:
        """Record the current descendants so they can be stopped even once re-parented."""
        if self.process.poll() is None:
            self.known_pids.update(_descendants(self.process.pid))

    def stop(self, grace: float) -> None:
        """SIGTERM the process, its group and its descendants; SIGKILL what is left after ``grace``."""
        self.remember_descendants()
        targets = [self.process.pid, *sorted(self.known_pids)]
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in targets:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        while time.monotonic() < deadline and any(alive(pid) for pid in targets[1:]):
            time.sleep(0.05)
        for pid in targets:
            if pid == self.process.pid and self.process.poll() is not None:
                continue
            if alive(pid):
                _signal(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def tail(self, lines: int = 30) -> str:
        """The last lines of this process's log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class ProcessGroup:
    """Processes started together under one state directory and stopped together, last first.

    Args:
        state_dir: Working directory of the children; their logs go to ``<state_dir>/logs/<name>.log``.
        stop_grace: Seconds each process gets between SIGTERM and SIGKILL.
    """

    def __init__(self, state_dir: Path, stop_grace: float = 5.0) -> None:
        self.state_dir = Path(state_dir)
        self.stop_grace = stop_grace
        self.processes: list[ChildProcess] = []

    def spawn(self, name: str, cmd: Sequence[str], env: dict[str, str]) -> ChildProcess:
        """Start ``cmd`` in its own session, output to its log, tied to this process's life."""
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        log = self.state_dir / "logs" / f"{name}.log"
        with log.open("ab") as handle:
            process = subprocess.Popen(  # noqa: S603
                list(cmd), stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=self.state_dir, start_new_session=True,
                preexec_fn=die_with_parent() if threading.current_thread() is threading.main_thread() else None,
            )
        child = ChildProcess(name, process, log)
        self.processes.append(child)
        return child

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll ``ready`` until it holds.

        Raises:
            FederationError: A process of the group exited, or ``timeout`` seconds passed; with log tails.
        """
        deadline = time.monotonic() + timeout
        while True:
            for child in self.processes:
                if child.process.poll() is not None:
                    raise FederationError(f"{child.name} exited with {child.process.returncode} while waiting for "
                                          f"{what}; log {child.log}:\n{child.tail()}")
            if ready():
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {c.name} ({c.log})\n{c.tail(15)}" for c in self.processes)
                raise FederationError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")
            time.sleep(0.2)

    def running(self) -> bool:
        """Whether every process of the group still runs."""
        return all(c.process.poll() is None for c in self.processes)

    def logs(self) -> dict[str, Path]:
        """Log file per process."""
        return {c.name: c.log for c in self.processes}

    def stop(self) -> None:
        """Stop every process, the last started first, with its descendants."""
        for child in self.processes:
            child.remember_descendants()
        while self.processes:
            self.processes.pop().stop(self.stop_grace)

    def remove_state(self) -> None:
        """Delete the state directory (logs included)."""
        shutil.rmtree(self.state_dir, ignore_errors=True)
