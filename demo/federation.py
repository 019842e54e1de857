"""A local, offline Flower federation for Tandem: one SuperLink and one SuperNode per party.

The coordinator's :class:`~coordinator.flower.superlink.SuperLinkService` and one
:class:`~node.flower.supernode.SuperNodeService` per party, in one process group, for tests, benchmarks
and the demo.

``LocalFederation`` starts real, separate processes on loopback, each on a free port:

- a SuperLink (``flower-superlink`` behind the coordinator's Control gate), with TLS from a freshly
  generated CA and SuperNode authentication (``--enable-supernode-auth``), telemetry and update checks
  off and ``--disable-runtime-dependency-installation``. Flower 1.42 serves its Fleet, Control and
  Runtime APIs over HTTPS on this one port; only this object holds the Control token;
- one SuperNode per party (``flower-supernode --isolation process``) beside its pinned ClientApp
  runner (:mod:`node.flower.warm_clientapp`: Tandem's installed shim only, never a FAB's code), whose
  node config carries ``party`` and ``service-url`` (the party's node service). Each SuperNode gets its
  own EC P-384 key and the coordinator registers its public key under the party's name (what
  ``flwr supernode register --name`` does) before the node starts.

These are the same classes, with the same flags, the coordinator and the nodes run in a deployment:
there is no option to run without TLS, SuperNode authentication or the pinned runner.

It waits until every SuperNode is online, raising :class:`FederationError` with the log tails
after ``connect_timeout``. ``run()`` starts a run of a Flower app directory with run-config
overrides (what ``flwr run -c`` does), ``wait()`` polls its status; both go through
:class:`~coordinator.flower.control_api.ControlClient`, in process, because each ``flwr`` CLI call costs
seconds of start-up (the stock ``flwr`` CLI cannot send the Control token, so the gate refuses it).
Leaving the context stops every process it started and their descendants (SuperExecs, ServerApp
processes, ClientApp runners), also on exceptions. Logs (``logs/``), certificates (``tls/``), keys
(``keys/``) and each component's ``FLWR_HOME`` live in ``state_dir``.

Latency knobs:

- ``poll_interval`` (seconds): SuperNodes start through :mod:`node.flower.fastpoll` (Flower's
  fixed 3 s idle sleep capped) and every SuperExec gets ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL``.
  ``None`` keeps Flower's stock sleeps.

What each party learns: nothing from this module; it only runs processes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from coordinator.flower.certs import TlsFiles, generate_supernode_key, generate_tls
from coordinator.flower.control_api import ControlClient, RunStatus
from coordinator.flower.superlink import APP_DIR, SuperLinkService
from node.flower.supernode import SuperNodeService
from protocols.flower_processes import ChildProcess, FederationError, ProcessGroup, free_port

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
        poll_interval: float | None = None,
        service_tokens: Mapping[str, str] | None = None,
        connect_timeout: float = 60.0,
        stop_grace: float = 5.0,
    ) -> None:
        """Describe the federation; nothing starts before ``start()`` / ``with``.

        Args:
            parties: Party name -> URL of that party's node service (``service-url``).
            state_dir: Where certificates, keys, Flower homes and logs go; a new temporary
                directory if None (removed again on a clean stop).
            poll_interval: Cap, in seconds, on the SuperNode and SuperExec poll sleeps; None keeps
                Flower's stock 3 s / 1 s.
            service_tokens: Party -> the round token its node service requires (handed to that
                party's ClientApp runner); parties not named send none.
            connect_timeout: How long to wait for the SuperLink and every SuperNode.
            stop_grace: Seconds each process gets between SIGTERM and SIGKILL.

        Raises:
            ValueError: Inconsistent options.
        """
        if not parties:
            raise ValueError("a federation needs at least one party")
        if poll_interval is not None and not 0.01 <= poll_interval <= 60:
            raise ValueError("poll_interval must be within [0.01, 60] seconds")
        self.parties = dict(parties)
        self.poll_interval, self.service_tokens = poll_interval, dict(service_tokens or {})
        self.connect_timeout = connect_timeout
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
        tls = self.tls_files = generate_tls(self.state_dir / "tls")
        self.superlink_port = free_port()
        self._superlink = SuperLinkService(self.state_dir, self.superlink_port, tls, poll_interval=self.poll_interval,
                                           connect_timeout=self.connect_timeout, group=self.group)
        self._superlink.start()
        for party, service_url in self.parties.items():
            keys = generate_supernode_key(self.state_dir / "keys", party)
            self._superlink.register(party, keys.public_key)
            SuperNodeService(self.state_dir, party, service_url, self.superlink_address, tls.ca_cert,
                             keys.private_key, poll_interval=self.poll_interval,
                             service_token=self.service_tokens.get(party), group=self.group).start()
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
        return self.superlink.online() >= set(self.parties)

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
        """Node id per party."""
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

    @property
    def superlink_address(self) -> str:
        """``host:port`` of the SuperLink's HTTP(S) APIs."""
        return f"127.0.0.1:{self.superlink_port}"

    def logs(self) -> dict[str, Path]:
        """Log file per running component."""
        return self.group.logs()
