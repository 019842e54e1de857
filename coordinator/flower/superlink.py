"""The federation split by owner: the coordinator's SuperLink and each node's own SuperNode.

:class:`~demo.federation.LocalFederation` starts every Flower process from one place
(tests, benchmarks). In a deployment the pieces belong to different organisations:

- :class:`SuperLinkService` (coordinator): ``flower-superlink`` with TLS, SuperNode authentication,
  ``--disable-runtime-dependency-installation``, telemetry and update checks off; registers each
  party's SuperNode public key under the party's name (what ``flwr supernode register --name`` does)
  and starts runs through the in-process Control API client.
- :class:`SuperNodeService` (each node): ``flower-supernode`` (or the fast-poll wrapper) that
  authenticates with the node's own EC key and forwards rounds to the node's own service URL.

Both reuse the process handling of :mod:`demo.federation` (own session, log file, stop
with descendants). What each party learns: nothing from this module; it only runs processes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from coordinator.flower.certs import TlsFiles
from coordinator.flower.control import ONLINE, ControlClient, load_node_public_key
from demo.federation import LocalFederation

__all__ = ["SuperLinkService", "SuperNodeService"]


class SuperLinkService(LocalFederation):
    """The coordinator's SuperLink on a fixed port with given TLS files (no SuperNodes of its own)."""

    def __init__(self, state_dir: Path, port: int, tls_files: TlsFiles, *, poll_interval: float | None = 0.1,
                 connect_timeout: float = 60.0) -> None:
        """Describe the SuperLink; nothing starts before :meth:`start`.

        Args:
            state_dir: Logs and ``FLWR_HOME`` of the SuperLink.
            port: Its HTTPS port (Fleet, Control and Runtime APIs) on 127.0.0.1.
            tls_files: CA, server certificate and key. Nodes verify the SuperLink with the CA.
            poll_interval: SuperExec poll interval (seconds) for the ServerApp runs; None = Flower's.
            connect_timeout: How long to wait for ``/health``.
        """
        super().__init__({"-": ""}, state_dir, poll_interval=poll_interval, connect_timeout=connect_timeout)
        self.parties = {}
        self._port, self._given_tls = port, tls_files

    def start(self) -> None:
        """Start the SuperLink and wait until it answers ``/health``."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        self.tls_files, self.superlink_port = self._given_tls, self._port
        self._write_cli_config()
        self._start_superlink()
        self._wait_superlink()
        self._control = ControlClient(self.superlink_address, self.tls_files.ca_cert)

    def register(self, party: str, public_key: Path) -> int:
        """Register ``party``'s SuperNode public key (OpenSSH file) under its name; return the node id."""
        node_id = self.control.register_node(load_node_public_key(public_key), party)
        self.node_ids[party] = node_id
        return node_id

    def online(self) -> set[str]:
        """The registered parties whose SuperNode is online."""
        statuses = self.control.node_statuses()
        return {party for party, node in self.node_ids.items() if statuses.get(node) == ONLINE}


class SuperNodeService(LocalFederation):
    """One node's SuperNode, connecting to a SuperLink it does not own."""

    def __init__(  # noqa: PLR0913
        self, state_dir: Path, party: str, service_url: str, superlink_address: str, ca_cert: Path,
        private_key: Path, *, poll_interval: float | None = 0.1,
    ) -> None:
        """Describe the SuperNode; nothing starts before :meth:`start`.

        Args:
            state_dir: Logs and ``FLWR_HOME``.
            party: The party name the coordinator registered this node's key under.
            service_url: Where the ClientApp shim POSTs rounds (the node's loopback Flower endpoint).
            superlink_address: ``host:port`` of the coordinator's SuperLink.
            ca_cert: CA that signed the SuperLink's certificate.
            private_key: This node's EC key (OpenSSH PEM); its public half is registered at the
                coordinator. Whoever holds it can impersonate this party's SuperNode.
            poll_interval: Cap on the SuperNode's idle sleep; None keeps Flower's 3 s.
        """
        super().__init__({party: service_url}, state_dir, poll_interval=poll_interval)
        self._party, self._address, self._key = party, superlink_address, private_key
        self.tls_files = TlsFiles(ca_cert, ca_cert, ca_cert)

    @property
    def superlink_address(self) -> str:
        """The coordinator's SuperLink."""
        return self._address

    def start(self) -> None:
        """Start the SuperNode process (it retries until the SuperLink accepts it)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        self.bin_dir = Path(sys.executable).parent
        self._start_supernode(self._party, self.parties[self._party], self._key)

    def alive(self) -> bool:
        """Whether the SuperNode process still runs."""
        return all(c.process.poll() is None for c in self._components)
