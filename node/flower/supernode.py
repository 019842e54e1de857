"""A node's own SuperNode: ``flower-supernode`` (or the fast-poll wrapper) as a child process.

:class:`SuperNodeService` starts the SuperNode that connects to the coordinator's SuperLink, authenticates
with the node's own EC key (its public half registered at the coordinator under the party's name) and
forwards rounds to the node's own service URL through the ClientApp shim (:mod:`node.flower.client_app`).
With ``warm_clientapp`` it runs with ``--isolation process`` beside a long-lived
:mod:`node.flower.warm_clientapp` runner, which runs only the pinned shim whatever a run's FAB names.
:mod:`node.flower.supernode_keeper` keeps it running in a deployment; :mod:`demo.federation` starts one
per party on one machine.

What each party learns: nothing from this module; it only runs processes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from protocols.flower_processes import ProcessGroup, flower_env, free_port
from protocols.wire.flower_round import NODE_CONFIG_PARTY, NODE_CONFIG_SERVICE_URL

__all__ = ["SuperNodeService"]


class SuperNodeService:
    """One node's SuperNode, connecting to a SuperLink it does not own.

    Args:
        state_dir: Logs and ``FLWR_HOME``.
        party: The party name the coordinator registered this node's key under.
        service_url: Where the ClientApp shim POSTs rounds (the node's loopback Flower endpoint).
        superlink_address: ``host:port`` of the coordinator's SuperLink.
        ca_cert: CA that signed the SuperLink's certificate; None connects without TLS (tests of
            Flower itself only: rounds and the node's key would cross the network in clear).
        private_key: This node's EC key (OpenSSH PEM), or None where the SuperLink does not authenticate
            SuperNodes. Whoever holds it can impersonate this party's SuperNode.
        poll_interval: Cap on the SuperNode's idle sleep; None keeps Flower's 3 s.
        warm_clientapp: Run the pinned ClientApp in one long-lived runner instead of a process per message.
        group: The process group to start in (a new one in ``state_dir`` if None).
    """

    def __init__(self, state_dir: Path, party: str, service_url: str, superlink_address: str,  # noqa: PLR0913
                 ca_cert: Path | None, private_key: Path | None, *, poll_interval: float | None = 0.1,
                 warm_clientapp: bool = False, group: ProcessGroup | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.party, self.service_url, self.superlink_address = party, service_url, superlink_address
        self.ca_cert, self.private_key = ca_cert, private_key
        self.poll_interval, self.warm_clientapp = poll_interval, warm_clientapp
        self.group = group if group is not None else ProcessGroup(self.state_dir)

    def start(self) -> None:
        """Start the SuperNode process (it retries until the SuperLink accepts it)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        runtime_port = free_port()
        extra = {} if self.poll_interval is None else {"TANDEM_SUPERNODE_POLL_INTERVAL": str(self.poll_interval)}
        home = self.state_dir / f"flwr-{self.party}"
        node = self.group.spawn(f"supernode-{self.party}", self._command(runtime_port),
                                flower_env(home, self.poll_interval, extra))
        if self.warm_clientapp:
            runner = [sys.executable, "-m", "node.flower.warm_clientapp", "--runtime-api-address",
                      f"127.0.0.1:{runtime_port}", "--insecure", "--poll",
                      str(self.poll_interval if self.poll_interval is not None else 1.0),
                      "--parent-pid", str(node.process.pid)]
            self.group.spawn(f"clientapp-{self.party}", runner, flower_env(home, self.poll_interval))

    def _command(self, runtime_port: int) -> list[str]:
        if self.poll_interval is None:
            cmd = [str(Path(sys.executable).parent / "flower-supernode")]
        else:
            cmd = [sys.executable, "-m", "node.flower.fastpoll"]
        node_config = f'{NODE_CONFIG_PARTY}="{self.party}" {NODE_CONFIG_SERVICE_URL}="{self.service_url}"'
        cmd += ["--superlink", self.superlink_address, "--port", str(runtime_port), "--node-config", node_config]
        cmd += ["--root-certificates", str(self.ca_cert)] if self.ca_cert else ["--insecure"]
        if self.private_key is not None:
            cmd += ["--auth-supernode-private-key", str(self.private_key)]
        if self.warm_clientapp:
            cmd += ["--isolation", "process"]
        return cmd

    def alive(self) -> bool:
        """Whether the SuperNode (and its runner) still run."""
        return self.group.running()

    def stop(self) -> None:
        """Stop the SuperNode with its descendants (and the group's others)."""
        self.group.stop()
