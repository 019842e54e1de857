"""A local, offline Flower federation for Tandem: one SuperLink and one SuperNode per party.

The coordinator's :class:`~coordinator.flower.superlink.SuperLinkService` and one
:class:`~node.flower.supernode.SuperNodeService` per party, in one process group, for tests, benchmarks
and the demo.

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
:class:`~coordinator.flower.control_api.ControlClient`, in process, because each ``flwr`` CLI call costs
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
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import tomli_w

from coordinator.flower.certs import TlsFiles, generate_supernode_key, generate_tls
from coordinator.flower.control_api import ControlClient, RunStatus
from coordinator.flower.superlink import APP_DIR, SuperLinkService
from node.flower.supernode import SuperNodeService
from protocols.flower_processes import ChildProcess, FederationError, ProcessGroup, flower_env, free_port

__all__ = ["LocalFederation"]

_CONNECTION = "tandem"


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
        self.tls, self.supernode_auth, self.poll_interval = tls, supernode_auth, poll_interval
        self.warm_clientapp, self.connect_timeout = warm_clientapp, connect_timeout
        self._owns_state_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="tandem-flwr-"))
        self.group = ProcessGroup(self.state_dir, stop_grace)
        self.superlink_port = 0
        self.tls_files: TlsFiles | None = None
        self._superlink: SuperLinkService | None = None

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
        if self.tls:
            self.tls_files = generate_tls(self.state_dir / "tls")
        self.superlink_port = free_port()
        self._superlink = SuperLinkService(self.state_dir, self.superlink_port, self.tls_files,
                                           supernode_auth=self.supernode_auth, poll_interval=self.poll_interval,
                                           connect_timeout=self.connect_timeout, group=self.group)
        self._write_cli_config()
        self._superlink.start()
        for party, service_url in self.parties.items():
            key = None
            if self.supernode_auth:
                keys = generate_supernode_key(self.state_dir / "keys", party)
                self._superlink.register(party, keys.public_key)
                key = keys.private_key
            SuperNodeService(self.state_dir, party, service_url, self.superlink_address,
                             self.tls_files.ca_cert if self.tls_files else None, key,
                             poll_interval=self.poll_interval, warm_clientapp=self.warm_clientapp,
                             group=self.group).start()
        self.group.wait_until(self._all_online, f"SuperNodes {sorted(self.parties)} to come online",
                              self.connect_timeout)

    def stop(self, clean: bool = True) -> None:
        """Stop every process this federation started (SuperNodes first), with descendants.

        Args:
            clean: Remove a temporary state directory this object created (kept otherwise, for
                the logs).
        """
        if self._superlink is not None:
            self._superlink.stop()
            self._superlink = None
        self.group.stop()
        if clean and self._owns_state_dir:
            self.group.remove_state()

    def _all_online(self) -> bool:
        if self.supernode_auth:
            return self.superlink.online() >= set(self.parties)
        return self.superlink.online_count() >= len(self.parties)

    # ----------------------------------------------------------------- running apps

    @property
    def superlink(self) -> SuperLinkService:
        """The running SuperLink."""
        if self._superlink is None:
            raise FederationError("the federation is not running")
        return self._superlink

    @property
    def control(self) -> ControlClient:
        """The Control API client (available once started)."""
        return self.superlink.control

    @property
    def node_ids(self) -> dict[str, int]:
        """Node id per party (with SuperNode authentication)."""
        return dict(self._superlink.node_ids) if self._superlink else {}

    @property
    def processes(self) -> list[ChildProcess]:
        """Every process running now, in start order."""
        return list(self.group.processes)

    def run(self, run_config: Mapping[str, Any], app_dir: Path = APP_DIR) -> int:
        """Start a run of the Flower app in ``app_dir`` with the given run-config overrides; return its id."""
        return self.superlink.run(run_config, app_dir)

    def status(self, run_id: int) -> RunStatus:
        """The run's status as the SuperLink reports it."""
        return self.superlink.status(run_id)

    def wait(self, run_id: int, timeout: float, poll: float = 0.5) -> RunStatus:
        """Poll until the run finishes (raises :class:`FederationError` after ``timeout`` seconds)."""
        return self.superlink.wait(run_id, timeout, poll)

    def stop_run(self, run_id: int) -> None:
        """Ask the SuperLink to stop a run."""
        self.superlink.stop_run(run_id)

    def flwr(self, *args: str, timeout: float = 60.0) -> dict[str, Any]:
        """Run a ``flwr`` CLI command against this federation's SuperLink; return its JSON answer.

        Raises:
            FederationError: The command produced no JSON.
        """
        cmd = [str(Path(sys.executable).parent / "flwr"), *args, "--format", "json"]
        done = subprocess.run(cmd, env=flower_env(self._cli_home(), self.poll_interval), capture_output=True,
                              timeout=timeout, check=False)
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
        return self.group.logs()

    def _cli_home(self) -> Path:
        return self.state_dir / "flwr-cli"

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
