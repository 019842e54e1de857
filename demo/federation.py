"""A local, offline Flower federation for Tandem: one SuperLink and one SuperNode per party.

``LocalFederation`` starts real, separate processes on loopback, each on a free port:

- a SuperLink (``flower-superlink``), by default with TLS from a freshly generated CA and with
  SuperNode authentication (``--enable-supernode-auth``), telemetry and update checks off and
  ``--disable-runtime-dependency-installation``. Flower 1.42 serves its Fleet, Control and Runtime
  APIs over HTTPS on this one port;
- one SuperNode per party (``flower-supernode``), whose node config carries ``party`` and
  ``service-url`` (the party's node service). With authentication each SuperNode gets its own EC
  P-384 key and the coordinator registers its public key under the party's name (what
  ``flwr supernode register --name`` does) before the node starts.

It waits until every SuperNode is online, raising :class:`FederationError` with the log tails
after ``connect_timeout``. ``run()`` starts a run of a Flower app directory with run-config
overrides (what ``flwr run -c`` does), ``wait()`` polls its status; both go through
:class:`~coordinator.flower.control.ControlClient`, in process, because each ``flwr`` CLI call costs
seconds of start-up (``flwr()`` still runs any CLI command, e.g. ``log``). Leaving the context stops
every process it started and their descendants (SuperExecs, ServerApp/ClientApp processes), also
on exceptions. Logs (``logs/``), certificates (``tls/``), keys (``keys/``) and each component's
``FLWR_HOME`` live in ``state_dir``; ``flwr-cli/config.toml`` names the SuperLink as connection
``tandem`` for manual ``FLWR_HOME=<state_dir>/flwr-cli flwr ls tandem``.

Latency knobs:

- ``poll_interval`` (seconds): SuperNodes start through :mod:`node.flower.fastpoll` (Flower's
  fixed 3 s idle sleep capped) and every SuperExec gets ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL``.
  ``None`` keeps Flower's stock behaviour.
- ``warm_clientapp``: SuperNodes run with ``--isolation process`` and a long-lived
  :mod:`node.flower.warm_clientapp` runner beside each, instead of one ``flwr-clientapp``
  process per message.

What each party learns: nothing from this module; it only runs processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import tomli_w

from coordinator.flower.certs import TlsFiles, generate_supernode_key, generate_tls
from coordinator.flower.control import ONLINE, ControlClient, RunStatus, load_node_public_key

APP_DIR = Path(__file__).resolve().parent / "app"
"""The Tandem Flower app (arbiter ServerApp + ClientApp shim)."""

SUPEREXEC_POLL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"
_CONNECTION = "tandem"
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


def _die_with_parent() -> Callable[[], None] | None:
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


def _alive(pid: int) -> bool:
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
class _Component:
    """One process the federation started."""

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
        while time.monotonic() < deadline and any(_alive(pid) for pid in targets[1:]):
            time.sleep(0.05)
        for pid in targets:
            if pid == self.process.pid and self.process.poll() is not None:
                continue
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def tail(self, lines: int = 30) -> str:
        """The last lines of this component's log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class LocalFederation:
    """SuperLink + one SuperNode per party, as real processes on loopback.

    Example::

        with LocalFederation({"bank": "http://127.0.0.1:8101", "telco": "http://127.0.0.1:8102"}) as fed:
            run_id = fed.run({"arbiter": "demo.flower_toy:sum_arbiter", "job-id": "j1"})
            print(fed.wait(run_id, timeout=120))
    """

    def __init__(  # noqa: PLR0913
        self,
        parties: Mapping[str, str],
        state_dir: Path | None = None,
        *,
        tls: bool = True,
        supernode_auth: bool = True,
        poll_interval: float | None = None,
        warm_clientapp: bool = False,
        connect_timeout: float = 60.0,
        stop_grace: float = 5.0,
    ) -> None:
        """Describe the federation; nothing starts before ``start()`` / ``with``.

        Args:
            parties: Party name -> URL of that party's node service (``service-url``).
            state_dir: Where certificates, keys, Flower homes and logs go; a new temporary
                directory if None (removed again on a clean stop).
            tls: Serve the SuperLink over HTTPS with generated certificates.
            supernode_auth: Require SuperNode authentication (needs ``tls``).
            poll_interval: Cap, in seconds, on the SuperNode and SuperExec poll sleeps; None keeps
                Flower's stock 3 s / 1 s.
            warm_clientapp: Start each SuperNode with ``--isolation process`` beside a long-lived
                :mod:`node.flower.warm_clientapp` runner instead of a fresh ClientApp process
                per message (which also pins the party to its installed ClientApp shim).
            connect_timeout: How long to wait for the SuperLink and every SuperNode.
            stop_grace: Seconds each process gets between SIGTERM and SIGKILL.

        Raises:
            ValueError: Inconsistent options.
        """
        if not parties:
            raise ValueError("a federation needs at least one party")
        if supernode_auth and not tls:
            raise ValueError("Flower requires TLS for SuperNode authentication")
        if poll_interval is not None and not 0.01 <= poll_interval <= 60:
            raise ValueError("poll_interval must be within [0.01, 60] seconds")
        self.parties = dict(parties)
        self.tls = tls
        self.supernode_auth = supernode_auth
        self.poll_interval = poll_interval
        self.warm_clientapp = warm_clientapp
        self.connect_timeout = connect_timeout
        self.stop_grace = stop_grace
        self._owns_state_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="tandem-flwr-"))
        self.bin_dir = Path(sys.executable).parent
        self.superlink_port = 0
        self.tls_files: TlsFiles | None = None
        self.node_ids: dict[str, int] = {}
        self._components: list[_Component] = []
        self._control: ControlClient | None = None

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> LocalFederation:
        """Start everything; stop what started if anything fails."""
        try:
            self.start()
        except BaseException:
            self.stop(clean=False)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop every process."""
        self.stop(clean=exc_type is None)

    def start(self) -> None:
        """Start the SuperLink, register and start the SuperNodes, wait until all are online."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        if self.tls:
            self.tls_files = generate_tls(self.state_dir / "tls")
        self.superlink_port = free_port()
        self._write_cli_config()
        self._start_superlink()
        self._wait_superlink()
        self._control = ControlClient(self.superlink_address, self.tls_files.ca_cert if self.tls_files else None)
        for party, service_url in self.parties.items():
            key = None
            if self.supernode_auth:
                keys = generate_supernode_key(self.state_dir / "keys", party)
                self.node_ids[party] = self._register(party, keys.public_key)
                key = keys.private_key
            self._start_supernode(party, service_url, key)
        self._wait_supernodes()

    def stop(self, clean: bool = True) -> None:
        """Stop every process this federation started (SuperNodes first), with descendants.

        Args:
            clean: Remove a temporary state directory this object created (kept otherwise, for
                the logs).
        """
        for component in self._components:
            component.remember_descendants()
        if self._control is not None:
            self._control.close()
            self._control = None
        while self._components:
            self._components.pop().stop(self.stop_grace)
        if clean and self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # ----------------------------------------------------------------- running apps

    @property
    def control(self) -> ControlClient:
        """The Control API client (available once started)."""
        if self._control is None:
            raise FederationError("the federation is not running")
        return self._control

    def run(self, run_config: Mapping[str, Any], app_dir: Path = APP_DIR) -> int:
        """Start a run of the Flower app in ``app_dir`` with the given run-config overrides.

        Returns:
            The run id.
        """
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

    def flwr(self, *args: str, timeout: float = 60.0) -> dict[str, Any]:
        """Run a ``flwr`` CLI command against this federation's SuperLink; return its JSON answer.

        Raises:
            FederationError: The command produced no JSON.
        """
        cmd = [str(self.bin_dir / "flwr"), *args, "--format", "json"]
        done = subprocess.run(cmd, env=self._env(self._cli_home()), capture_output=True, timeout=timeout, check=False)
        out = done.stdout.decode(errors="replace")
        start = out.find("{")
        try:
            answer: dict[str, Any] = json.loads(out[start:]) if start >= 0 else {}
        except json.JSONDecodeError as err:
            raise FederationError(f"{' '.join(args)}: unreadable answer {out!r}") from err
        if not answer:
            raise FederationError(f"{' '.join(args)}: no answer; stderr {done.stderr.decode(errors='replace')}")
        return answer

    @property
    def superlink_address(self) -> str:
        """``host:port`` of the SuperLink's HTTP(S) APIs."""
        return f"127.0.0.1:{self.superlink_port}"

    def logs(self) -> dict[str, Path]:
        """Log file per running component."""
        return {c.name: c.log for c in self._components}

    # ----------------------------------------------------------------- internals

    def _cli_home(self) -> Path:
        return self.state_dir / "flwr-cli"

    def _env(self, flwr_home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLWR_")}
        env.update(_BASE_ENV)
        env["FLWR_HOME"] = str(flwr_home)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        if self.poll_interval is not None:
            env[SUPEREXEC_POLL_ENV] = str(self.poll_interval)
        env.update(extra or {})
        return env

    def _write_cli_config(self) -> None:
        connection: dict[str, Any] = {"address": self.superlink_address}
        if self.tls_files is not None:
            connection["root-certificates"] = str(self.tls_files.ca_cert)
        else:
            connection["insecure"] = True
        home = self._cli_home()
        home.mkdir(parents=True, exist_ok=True)
        config = {"superlink": {"default": _CONNECTION, _CONNECTION: connection}}
        (home / "config.toml").write_text(tomli_w.dumps(config))

    def _spawn(self, name: str, cmd: Sequence[str], env: dict[str, str]) -> _Component:
        log = self.state_dir / "logs" / f"{name}.log"
        with log.open("ab") as handle:
            process = subprocess.Popen(  # noqa: S603
                list(cmd),
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.state_dir,
                start_new_session=True,
                preexec_fn=_die_with_parent() if threading.current_thread() is threading.main_thread() else None,
            )
        component = _Component(name, process, log)
        self._components.append(component)
        return component

    def _start_superlink(self) -> None:
        cmd = [
            str(self.bin_dir / "flower-superlink"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.superlink_port),
            "--disable-runtime-dependency-installation",
        ]
        if self.tls_files is not None:
            cmd += [
                "--ssl-ca-certfile",
                str(self.tls_files.ca_cert),
                "--ssl-certfile",
                str(self.tls_files.server_cert),
                "--ssl-keyfile",
                str(self.tls_files.server_key),
            ]
        else:
            cmd.append("--insecure")
        if self.supernode_auth:
            cmd.append("--enable-supernode-auth")
        self._spawn("superlink", cmd, self._env(self.state_dir / "flwr-superlink"))

    def _wait_superlink(self) -> None:
        scheme = "https" if self.tls_files else "http"
        verify: Any = str(self.tls_files.ca_cert) if self.tls_files else False
        url = f"{scheme}://{self.superlink_address}/health"
        self._wait_until(lambda: _http_ok(url, verify), "the SuperLink to answer /health")

    def _register(self, party: str, public_key: Path) -> int:
        return self.control.register_node(load_node_public_key(public_key), party)

    def _start_supernode(self, party: str, service_url: str, private_key: Path | None) -> None:
        node_config = f'party="{party}" service-url="{service_url}"'
        if self.poll_interval is None:
            cmd = [str(self.bin_dir / "flower-supernode")]
        else:
            cmd = [sys.executable, "-m", "node.flower.fastpoll"]
        runtime_port = free_port()
        cmd += [
            "--superlink",
            self.superlink_address,
            "--port",
            str(runtime_port),
            "--node-config",
            node_config,
        ]
        cmd += ["--root-certificates", str(self.tls_files.ca_cert)] if self.tls_files else ["--insecure"]
        if private_key is not None:
            cmd += ["--auth-supernode-private-key", str(private_key)]
        if self.warm_clientapp:
            cmd += ["--isolation", "process"]
        extra = {}
        if self.poll_interval is not None:
            extra["TANDEM_SUPERNODE_POLL_INTERVAL"] = str(self.poll_interval)
        home = self.state_dir / f"flwr-{party}"
        node = self._spawn(f"supernode-{party}", cmd, self._env(home, extra))
        if self.warm_clientapp:
            runner = [
                sys.executable,
                "-m",
                "node.flower.warm_clientapp",
                "--runtime-api-address",
                f"127.0.0.1:{runtime_port}",
                "--insecure",
                "--poll",
                str(self.poll_interval if self.poll_interval is not None else 1.0),
                "--parent-pid",
                str(node.process.pid),
            ]
            self._spawn(f"clientapp-{party}", runner, self._env(home))

    def _all_online(self) -> bool:
        online = {node for node, status in self.control.node_statuses().items() if status == ONLINE}
        if self.supernode_auth:
            return set(self.node_ids.values()) <= online
        return len(online) >= len(self.parties)

    def _wait_until(self, ready: Any, what: str) -> None:
        deadline = time.monotonic() + self.connect_timeout
        while True:
            for component in self._components:
                if component.process.poll() is not None:
                    raise FederationError(
                        f"{component.name} exited with {component.process.returncode} while waiting for "
                        f"{what}; log {component.log}:\n{component.tail()}"
                    )
            if ready():
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {c.name} ({c.log})\n{c.tail(15)}" for c in self._components)
                raise FederationError(f"timed out after {self.connect_timeout:.0f} s waiting for {what}\n{tails}")
            time.sleep(0.2)

    def _wait_supernodes(self) -> None:
        self._wait_until(self._all_online, f"SuperNodes {sorted(self.parties)} to come online")


def _http_ok(url: str, verify: Any) -> bool:
    try:
        return httpx.get(url, verify=verify, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False
