"""Start and stop the federation's processes on loopback for the demo and the end-to-end tests.

Each service runs as its own OS process, exactly as it would on its own machine; logs go to files under
the state directory so that nothing a service prints mixes with the demo's own output.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from protocols.flower_processes import die_with_parent

__all__ = ["ProcessGroup", "Service", "free_port", "wait_until"]


def free_port() -> int:
    """Ask the kernel for a free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, poll: float = 0.2) -> None:
    """Poll ``check`` until it returns True or ``timeout`` seconds pass (then raise with ``what``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str, *, verify: bool | str = True) -> Callable[[], bool]:
    """A check that succeeds when GET ``url`` answers 200."""
    return lambda: httpx.get(url, timeout=2.0, verify=verify).status_code == 200


@dataclass
class Service:
    """One running process with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 20) -> str:
        """Last lines of the service's log, for error messages."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class ProcessGroup:
    """Processes started together and stopped together (also on errors)."""

    log_dir: Path
    services: list[Service] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Service:
        """Start ``argv`` (a Python module or console script in this environment) as service ``name``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        full_env = {**os.environ, **(env or {})}
        log = log_path.open("ab")
        # Own session (stopped as a group), and SIGTERM from the kernel if this process dies before stop():
        # a demo killed by `timeout` or a crashed test must not leave a federation running.
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True,
                                preexec_fn=die_with_parent())
        svc = Service(name, proc, log_path)
        self.services.append(svc)
        return svc

    def check_alive(self) -> None:
        """Raise with the log tail if any service has exited."""
        for svc in self.services:
            if svc.proc.poll() is not None:
                raise RuntimeError(f"{svc.name} exited with code {svc.proc.returncode}; log {svc.log_path}:\n"
                                   f"{svc.tail()}")

    def stop(self) -> None:
        """Terminate every process group, newest first; kill what does not stop in 30 s.

        The grace period lets the coordinator stop the Flower SuperLink it started.
        """
        for svc in reversed(self.services):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(svc.proc.pid, signal.SIGTERM)
        for svc in reversed(self.services):
            try:
                svc.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(svc.proc.pid, signal.SIGKILL)
                svc.proc.wait(timeout=5)
        self.services.clear()

    @contextlib.contextmanager
    def running(self) -> Iterator[ProcessGroup]:
        """Context manager that always stops the group."""
        try:
            yield self
        finally:
            self.stop()


def python_module(module: str, *args: str) -> list[str]:
    """Command line to run ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]
