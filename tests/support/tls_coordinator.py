"""TLS test fixtures with real handshakes: a private CA, a coordinator served over HTTPS, a bare TLS server.

* ``make_ca(dir, names)``: ``tandem-coordinator certs`` functions write a CA and a server certificate.
* ``TlsCoordinator``: ``python -m coordinator.cli serve`` over TLS in a subprocess (the real start-up path).
* ``bare_tls_server(cert, key, ...)``: a thread answering every request with one fixed HTTP response over
  an ``ssl`` server socket, for certificates the coordinator itself refuses to serve (expired, ...).
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from coordinator import certs
from node.coordinator_client import coordinator_tls_context
from tests.support.coordinator import BOOT
from tests.support.live_coordinator import ROOT, START_TIMEOUT_S, free_port

__all__ = ["TlsCoordinator", "bare_tls_server", "make_ca"]


def make_ca(directory: Path, names: list[str], *, out: str = "server", days: int = 30,
            now: datetime.datetime | None = None) -> certs.IssuedFiles:
    """A CA in ``directory`` and a certificate ``out`` for ``names`` (issued at ``now``)."""
    certs.init_ca(directory)
    return certs.issue(directory, names, directory / out, days=days, now=now, force=True)


class TlsCoordinator:
    """One coordinator process serving HTTPS from ``files`` on a free loopback port."""

    def __init__(self, state_dir: Path, files: certs.IssuedFiles, *, host_name: str = "localhost") -> None:
        self.state_dir, self.files = state_dir, files
        self.port = free_port()
        self.url = f"https://{host_name}:{self.port}"
        self.log = state_dir.parent / f"{state_dir.name}-tls-server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "TANDEM_COORD_STATE_DIR": str(self.state_dir), "TANDEM_COORD_BOOTSTRAP_TOKEN": BOOT,
                "TANDEM_COORD_TLS_CERT": str(self.files.cert), "TANDEM_COORD_TLS_KEY": str(self.files.key),
                "TANDEM_COORD_TRAINING_ENABLED": "0", "PYTHONPATH": str(ROOT)}

    def client(self) -> httpx.Client:
        """An httpx client pinned to the CA (TLS 1.3 minimum, as a node's)."""
        return httpx.Client(base_url=self.url, verify=coordinator_tls_context(self.files.ca), timeout=30)

    def start(self) -> None:
        """Start ``serve`` and wait until ``/healthz`` answers over TLS."""
        with self.log.open("w") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "coordinator.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + START_TIMEOUT_S
        with self.client() as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"coordinator exited: {self.log.read_text()[-2000:]}")
                try:
                    if client.get("/api/v1/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    time.sleep(0.1)
        raise TimeoutError(f"coordinator not healthy: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Stop the process this object started."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)


_RESPONSE = (b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9\r\nConnection: close\r\n\r\n"
             b"not found")


@contextmanager
def bare_tls_server(cert: Path | None, key: Path | None, *,
                    maximum_version: ssl.TLSVersion | None = None) -> Iterator[int]:
    """Serve ``_RESPONSE`` on a loopback port over TLS (plain TCP when ``cert`` is None); yield the port."""
    context = None
    if cert is not None and key is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        if maximum_version is not None:
            context.maximum_version = maximum_version
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                conn = context.wrap_socket(raw, server_side=True) if context else raw
                conn.recv(65536)
                conn.sendall(_RESPONSE)
            except (OSError, ssl.SSLError):
                pass  # the client refused the handshake: what the tests provoke
            finally:
                raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()
