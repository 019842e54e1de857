"""A node's own SuperNode: ``flower-supernode`` (or the fast-poll wrapper) beside its pinned ClientApp runner.

:class:`SuperNodeService` starts the SuperNode that connects to the coordinator's SuperLink over TLS,
authenticates with the node's own EC key (its public half registered at the coordinator under the party's
name) and forwards rounds to the node's own service URL through the ClientApp shim
(:mod:`node.flower.client_app`). There is one way to start it, whoever starts it (the node's ``serve``
through :mod:`node.flower.supernode_keeper`, :mod:`demo.federation`): always ``--isolation process``,
so the SuperNode never starts a ``flwr-clientapp`` of its own, beside the long-lived
:mod:`node.flower.warm_clientapp` runner, which runs only the installed shim and refuses any run whose
FAB is not Tandem's own. A fresh random SuperExec secret (file mode 0600) binds the two: no other
local process can claim the SuperNode's tasks.

What each party learns: nothing from this module; it only runs processes.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from protocols.flower_processes import ProcessGroup, flower_env, free_port
from protocols.wire.flower_round import NODE_CONFIG_PARTY, NODE_CONFIG_SERVICE_URL, ROUND_TOKEN_ENV

__all__ = ["SuperNodeService"]


class SuperNodeService:
    """One node's SuperNode, connecting to a SuperLink it does not own.

    Args:
        state_dir: Logs and ``FLWR_HOME``.
        party: The party name the coordinator registered this node's key under.
        service_url: Where the ClientApp shim POSTs rounds (the node's loopback Flower endpoint).
        superlink_address: ``host:port`` of the coordinator's SuperLink.
        ca_cert: CA that signed the SuperLink's certificate (TLS is required: SuperNode authentication
            needs it, and rounds would otherwise cross the network in clear).
        private_key: This node's EC key (OpenSSH PEM). Whoever holds it can impersonate this party's
            SuperNode.
        poll_interval: Cap on the SuperNode's idle sleep; None keeps Flower's 3 s.
        service_token: The node's round token, handed to the runner in its environment; the node's
            round endpoint refuses POSTs without it.
        group: The process group to start in (a new one in ``state_dir`` if None).
    """

    def __init__(self, state_dir: Path, party: str, service_url: str, superlink_address: str,  # noqa: PLR0913
                 ca_cert: Path, private_key: Path, *, poll_interval: float | None = 0.1,
                 service_token: str | None = None, group: ProcessGroup | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.party, self.service_url, self.superlink_address = party, service_url, superlink_address
        self.ca_cert, self.private_key = ca_cert, private_key
        self.poll_interval, self.service_token = poll_interval, service_token
        self.group = group if group is not None else ProcessGroup(self.state_dir)

    def start(self) -> None:
        """Start the SuperNode process (it retries until the SuperLink accepts it) and its ClientApp runner."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        home = self.state_dir / f"flwr-{self.party}"
        secret = _write_secret(home / "superexec.secret")
        runtime_port = free_port()
        extra = {} if self.poll_interval is None else {"TANDEM_SUPERNODE_POLL_INTERVAL": str(self.poll_interval)}
        node = self.group.spawn(f"supernode-{self.party}", self._command(runtime_port, secret),
                                flower_env(home, self.poll_interval, extra))
        runner = [sys.executable, "-m", "node.flower.warm_clientapp", "--runtime-api-address",
                  f"127.0.0.1:{runtime_port}", "--insecure", "--superexec-auth-secret-file", str(secret),
                  "--poll", str(self.poll_interval if self.poll_interval is not None else 1.0),
                  "--parent-pid", str(node.process.pid)]
        token = {ROUND_TOKEN_ENV: self.service_token} if self.service_token else {}
        self.group.spawn(f"clientapp-{self.party}", runner, flower_env(home, self.poll_interval, token))

    def _command(self, runtime_port: int, secret: Path) -> list[str]:
        if self.poll_interval is None:
            cmd = [str(Path(sys.executable).parent / "flower-supernode")]
        else:
            cmd = [sys.executable, "-m", "node.flower.fastpoll"]
        node_config = f'{NODE_CONFIG_PARTY}="{self.party}" {NODE_CONFIG_SERVICE_URL}="{self.service_url}"'
        return [*cmd, "--superlink", self.superlink_address, "--port", str(runtime_port), "--node-config",
                node_config, "--root-certificates", str(self.ca_cert),
                "--auth-supernode-private-key", str(self.private_key),
                "--isolation", "process", "--superexec-auth-secret-file", str(secret)]

    def alive(self) -> bool:
        """Whether the SuperNode and its runner still run."""
        return self.group.running()

    def stop(self) -> None:
        """Stop the SuperNode with its descendants (and the group's others)."""
        self.group.stop()


def _write_secret(path: Path) -> Path:
    """A fresh random secret in ``path`` (mode 0600), for this start of the SuperNode and its runner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    return path
