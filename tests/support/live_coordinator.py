"""A real coordinator process (``python -m coordinator.cli serve``) on a free loopback port, for attack tests.

``LiveCoordinator(state_dir)`` runs the coordinator (``workers`` API processes, default 1) over
``state_dir/coord.db`` (or ``database_url``) with its audit key and
signed-head file in ``state_dir``; ``start()`` waits for ``/healthz`` (or returns the exit code and
output when the coordinator refuses to start), ``stop()`` ends the process it started.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.coordinator import BOOT

__all__ = ["START_TIMEOUT_S", "LiveCoordinator", "free_port"]

START_TIMEOUT_S = 180.0  # a loaded 2-core machine can take over a minute to import and start it
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveCoordinator:
    """One coordinator process over a SQLite file in ``state_dir``."""

    def __init__(self, state_dir: Path, *, workers: int = 1, database_url: str | None = None) -> None:
        self.state_dir = state_dir
        self.db = state_dir / "coord.db"
        self.database_url = database_url or f"sqlite:///{self.db}"
        self.workers = workers
        self.log = state_dir.parent / f"{state_dir.name}-server.log"
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "TANDEM_COORD_DATABASE_URL": self.database_url, "TANDEM_COORD_BOOTSTRAP_TOKEN": BOOT,
                "TANDEM_COORD_SIGNING_KEY_PATH": str(self.state_dir / "coord.key"),
                "TANDEM_COORD_TRAINING_ENABLED": "0", "TANDEM_COORD_WORKERS": str(self.workers),
                "PYTHONPATH": str(ROOT)}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -m coordinator.cli ARGS`` against the same state; returns the finished process."""
        return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120, check=False)

    def start(self, port: int | None = None) -> int | None:
        """Start (on ``port``, default a free one) and wait until healthy (returns None), or return the exit code
        if the process refuses to start."""
        port = port or free_port()
        with self.log.open("w") as out:
            self._proc = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "serve", "--port", str(port)],
                                          env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                return code
            try:
                if httpx.get(f"{self.url}/api/v1/healthz", timeout=2).status_code == 200:
                    return None
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"coordinator not healthy after {START_TIMEOUT_S:.0f} s: {self.output()[-2000:]}")

    @property
    def pid(self) -> int:
        """The ``serve`` process's id."""
        assert self._proc is not None, "not started"
        return self._proc.pid

    def output(self) -> str:
        """Everything the process printed so far."""
        return self.log.read_text()

    def stop(self) -> None:
        """Stop the process this object started (SIGTERM, then wait)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
        self._proc = None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)
