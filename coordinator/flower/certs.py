"""Key material for a local Flower federation: a TLS CA, a server certificate, SuperNode keys.

Everything is generated offline with the ``cryptography`` package (the version Flower pins); the CA and
server certificates are built by ``coordinator.certs`` (the ``tandem-coordinator certs`` helper).

- ``generate_tls(dir)`` writes ``ca.crt``, ``server.crt`` and ``server.key`` (PEM). The server
  certificate is signed by the CA and names ``127.0.0.1``, ``::1`` and ``localhost`` as subject
  alternative names, which is what the SuperLink's HTTPS listener needs on loopback.
- ``generate_supernode_key(dir, name)`` writes the EC P-384 key pair a SuperNode authenticates
  with in Flower 1.42: the private key in OpenSSH PEM (``--auth-supernode-private-key``), the public
  key in OpenSSH one-line form (``flwr supernode register <file>``).

What each party learns: nothing; this module only writes files. Private keys are written with mode
0600.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from coordinator.certs import build_ca, build_server_cert

_VALIDITY_DAYS = 30
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the generated TLS material."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class NodeKeyFiles:
    """Paths of one SuperNode's authentication key pair."""

    private_key: Path
    public_key: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def generate_tls(directory: Path) -> TlsFiles:
    """Write a fresh CA and a loopback server certificate signed by it.

    Args:
        directory: Where to write ``ca.crt``, ``server.crt`` and ``server.key``; created if missing.

    Returns:
        The paths written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, ca_cert = build_ca(now, days=_VALIDITY_DAYS, common_name="Tandem local CA")
    server_key, server_cert = build_server_cert(ca_key, ca_cert, list(_LOOPBACK_NAMES), now, days=_VALIDITY_DAYS)
    files = TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        files.server_key,
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    return files


def generate_supernode_key(directory: Path, name: str) -> NodeKeyFiles:
    """Write an EC P-384 key pair in the OpenSSH formats Flower 1.42 expects for node auth.

    Args:
        directory: Where to write ``<name>_node`` and ``<name>_node.pub``; created if missing.
        name: File stem, normally the party name.

    Returns:
        The paths written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    files = NodeKeyFiles(directory / f"{name}_node", directory / f"{name}_node.pub")
    _write_private(
        files.private_key,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ),
    )
    files.public_key.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        + f" tandem-{name}\n".encode()
    )
    return files
