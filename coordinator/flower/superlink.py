"""The coordinator's SuperLink: ``flower-superlink`` as a child process, and the runs it starts.

:class:`SuperLinkService` starts ``flower-superlink`` (on 127.0.0.1 unless told otherwise) behind the
Control gate (:mod:`coordinator.flower.control_gate`), always with TLS, SuperNode authentication
(``--enable-supernode-auth``: only SuperNodes whose public key the coordinator registered are admitted),
``--disable-runtime-dependency-installation``, telemetry and update checks off. It makes a fresh random
Control token per start (file mode 0600 in its state directory); only its own Control API client
(:mod:`coordinator.flower.control_api`) holds it, so no one else can register a SuperNode or start a
run. It registers each party's SuperNode public key under the party's name (what ``flwr supernode
register --name`` does), refusing a name that is already taken, and starts, watches and stops runs
in process, because each ``flwr`` CLI call costs seconds of start-up. Each node runs its own SuperNode
(:mod:`node.flower.supernode`); :mod:`demo.federation` puts both together on one machine.

What each party learns: nothing from this module; it only runs a process and asks it for status.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from coordinator.flower.certs import TlsFiles
from coordinator.flower.control_api import ONLINE, ControlClient, RunStatus, load_node_public_key
from coordinator.flower.control_gate import TOKEN_FILE_ENV
from protocols.flower_processes import FederationError, ProcessGroup, flower_env

__all__ = ["APP_DIR", "PID_FILE", "SuperLinkService", "previous_gone"]

PID_FILE = "superlink.pid"
"""The running SuperLink's pid and start time, in its state directory: a restarted coordinator waits for it to end."""

APP_DIR = Path(__file__).resolve().parent / "app"
"""The Tandem Flower app (arbiter ServerApp + ClientApp shim): a FAB that carries only its pyproject."""


class SuperLinkService:
    """The coordinator's SuperLink on a fixed port.

    Args:
        state_dir: Logs and ``FLWR_HOME`` of the SuperLink.
        port: Its HTTPS port (Fleet, Control and Runtime APIs).
        tls_files: CA, server certificate and key (nodes verify the SuperLink with the CA).
        host: The address it listens on. Anything but loopback exposes the Fleet API to the nodes; the
            gate keeps the Control API to token holders and the Runtime API to this host.
        poll_interval: SuperExec poll interval (seconds) for the ServerApp runs; None keeps Flower's.
        connect_timeout: How long to wait for ``/health``.
        env: More environment for the SuperLink and so its ServerApp processes (e.g. the report token).
        group: The process group to start in (a new one in ``state_dir`` if None).
    """

    def __init__(self, state_dir: Path, port: int, tls_files: TlsFiles, *, host: str = "127.0.0.1",  # noqa: PLR0913
                 poll_interval: float | None = 0.1, connect_timeout: float = 60.0,
                 env: Mapping[str, str] | None = None, group: ProcessGroup | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.port, self.tls_files, self.host = port, tls_files, host
        self.poll_interval, self.connect_timeout, self.env = poll_interval, connect_timeout, dict(env or {})
        self.group = group if group is not None else ProcessGroup(self.state_dir)
        self.node_ids: dict[str, int] = {}
        self._control: ControlClient | None = None

    @property
    def address(self) -> str:
        """``host:port`` where this host reaches the SuperLink's APIs (loopback when it listens on all addresses)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"{host}:{self.port}"

    def start(self) -> None:
        """Start the SuperLink behind its Control gate and wait until it answers ``/health``."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        url = f"https://{self.address}/health"
        # a restarted coordinator: its previous SuperLink may still be shutting down on this port; a new one
        # started meanwhile would share the port with it, and runs started then would die with the old one
        self.group.wait_until(lambda: not _http_ok(url, str(self.tls_files.ca_cert)),
                              f"the previous SuperLink on {self.address} to stop", self.connect_timeout)
        previous_gone(self.state_dir / PID_FILE, self.connect_timeout)
        token = secrets.token_urlsafe(32)
        token_file = _write_private(self.state_dir / "control.token", token.encode())
        env = flower_env(self.state_dir / "flwr-superlink", self.poll_interval,
                         {**self.env, TOKEN_FILE_ENV: str(token_file)})
        child = self.group.spawn("superlink", self._command(), env)
        (self.state_dir / PID_FILE).write_text(f"{child.process.pid} {_start_time(child.process.pid)}\n")
        self.group.wait_until(lambda: _http_ok(url, str(self.tls_files.ca_cert)), "the SuperLink to answer /health",
                              self.connect_timeout)
        self._control = ControlClient(self.address, self.tls_files.ca_cert, token)

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "coordinator.flower.control_gate", "--host", self.host,
                "--port", str(self.port), "--disable-runtime-dependency-installation",
                "--ssl-ca-certfile", str(self.tls_files.ca_cert), "--ssl-certfile", str(self.tls_files.server_cert),
                "--ssl-keyfile", str(self.tls_files.server_key), "--enable-supernode-auth"]

    @property
    def control(self) -> ControlClient:
        """The Control API client (available once started)."""
        if self._control is None:
            raise FederationError("the SuperLink is not running")
        return self._control

    def register(self, party: str, public_key: Path) -> int:
        """Register ``party``'s SuperNode public key (OpenSSH file) under its name; return the node id.

        Raises:
            ControlError: ``party`` is already registered (party names are unique) or the SuperLink refused.
        """
        node_id = self.control.register_node(load_node_public_key(public_key), party)
        self.node_ids[party] = node_id
        return node_id

    def online(self) -> set[str]:
        """The registered parties whose SuperNode is online."""
        statuses = self.control.node_statuses()
        return {party for party, node in self.node_ids.items() if statuses.get(node) == ONLINE}

    def run(self, run_config: Mapping[str, Any], app_dir: Path = APP_DIR) -> int:
        """Start a run of the Flower app in ``app_dir`` with run-config overrides; return the run id."""
        return self.control.start_run(app_dir, run_config)

    def status(self, run_id: int) -> RunStatus:
        """The run's status as the SuperLink reports it."""
        return self.control.run_status(run_id)

    def wait(self, run_id: int, timeout: float, poll: float = 0.5) -> RunStatus:
        """Poll until the run finishes.

        Raises:
            FederationError: The run did not finish within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(run_id)
            if status.finished:
                return status
            if time.monotonic() > deadline:
                raise FederationError(f"run {run_id} still {status.status} after {timeout:.0f} s")
            time.sleep(poll)

    def stop_run(self, run_id: int) -> None:
        """Ask the SuperLink to stop a run."""
        self.control.stop_run(run_id)

    def stop(self) -> None:
        """Close the Control API client and stop the SuperLink with its descendants (and the group's others)."""
        if self._control is not None:
            self._control.close()
            self._control = None
        self.group.stop()


def previous_gone(pid_file: Path, timeout: float) -> None:
    """Wait until the SuperLink an earlier coordinator process started here (``pid_file``) has exited.

    Its listener closes first, so ``/health`` stops answering at once; but the process lives on for
    seconds while its open connections drain, and its SuperExec with it, polling the Runtime API on the
    same port — which now reaches the new SuperLink. A run started in that overlap can be lost: in a CI
    run the old process lived 11 s past its shutdown, and the ServerApp of a retried job's run, started
    meanwhile, ended "failed with unknown error" 2 s later without a report. So the new SuperLink starts
    only once the old process is gone; one still there after ``timeout`` seconds is killed (SIGKILL).
    The file names the process by pid and start time (``/proc/<pid>/stat`` field 22), so a pid that is
    no longer that SuperLink (gone, a zombie, reused by anything, another SuperLink included) is ignored.
    """
    try:
        pid_text, started = pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return

    def alive() -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return (b"coordinator.flower.control_gate" in cmdline and state not in ("Z", "X")
                and _start_time(pid) == started)  # the very process that wrote the file, not a reused pid

    deadline = time.monotonic() + timeout
    while alive():
        if time.monotonic() > deadline:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            return
        time.sleep(0.2)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22); "" if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` to a fresh ``path`` readable by this user only."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _http_ok(url: str, verify: Any) -> bool:
    try:
        return httpx.get(url, verify=verify, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False
