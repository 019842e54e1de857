"""A node's keys on disk: Ed25519 approval key, X25519 sealing key, TLS key and self-signed certificate.

Layout of ``state_dir`` (directory mode 0700, every file 0600)::

    signing.key    32-byte Ed25519 seed (raw)      -- approves jobs for the party
    sealing.key    32-byte X25519 private (raw)    -- opens sealed envelopes addressed to the party
    tls.key        PEM PKCS#8 EC P-256 private key -- the node's mutual-TLS identity
    tls.crt        PEM self-signed X.509 certificate (SAN from settings, 2-year validity)

``init_keys`` creates whatever is missing and loads the rest, so running it twice changes nothing.
Peers pin the certificate through ``tls_fingerprint`` (SHA-256 of its DER), registered with the
coordinator; there is no CA.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from Crypto.PublicKey import ECC
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocols.crypto.sealing import generate_sealing_key, sealing_private_key, sealing_public_hex
from protocols.crypto.signing import SigningKey
from protocols.wire.errors import ConfigError, CryptoError

__all__ = ["CERT_VALIDITY", "NodeKeys", "init_keys", "load_keys", "tls_fingerprint"]

CERT_VALIDITY = dt.timedelta(days=730)
_FILES = {"signing": "signing.key", "sealing": "sealing.key", "tls_key": "tls.key", "tls_cert": "tls.crt"}


@dataclass(frozen=True)
class NodeKeys:
    """The party's keys as loaded from ``state_dir``."""

    state_dir: Path
    signing: SigningKey
    sealing: ECC.EccKey
    tls_cert_pem: bytes

    @property
    def tls_key_path(self) -> Path:
        """Path of the PEM TLS private key (for ssl contexts)."""
        return self.state_dir / _FILES["tls_key"]

    @property
    def tls_cert_path(self) -> Path:
        """Path of the PEM TLS certificate."""
        return self.state_dir / _FILES["tls_cert"]

    @property
    def sealing_public_hex(self) -> str:
        """X25519 public key, hex, as registered."""
        return sealing_public_hex(self.sealing)

    @property
    def tls_fingerprint(self) -> str:
        """SHA-256 of the DER certificate, hex, as registered."""
        return tls_fingerprint(self.tls_cert_pem)


def tls_fingerprint(cert: bytes) -> str:
    """SHA-256 (hex) of a certificate's DER encoding; accepts PEM or DER."""
    if cert.lstrip().startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(cert).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(cert).hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (never overwrite: a key that exists is kept)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _read(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
    return path.read_bytes()


def _self_signed(common_name: str, names: Sequence[str], now: dt.datetime) -> tuple[bytes, bytes]:
    """Make a P-256 key and a self-signed leaf certificate for ``names`` (hostnames or IPs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def init_keys(state_dir: Path, party: str, names: Sequence[str] = ("localhost", "127.0.0.1")) -> NodeKeys:
    """Create the missing keys and certificate in ``state_dir`` and return all of them.

    Existing files are never replaced: re-running is a no-op. To rotate, delete the file and run again
    (then re-register the party, since its public keys or fingerprint change).

    Args:
        state_dir: the node's state directory (created with mode 0700).
        party: party name, used as the certificate's common name.
        names: hostnames and IP addresses for the certificate's SAN.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = {k: state_dir / v for k, v in _FILES.items()}
    if not paths["signing"].exists():
        _write_private(paths["signing"], SigningKey.generate().seed())
    if not paths["sealing"].exists():
        _write_private(paths["sealing"], bytes(generate_sealing_key().seed))
    if not paths["tls_key"].exists() or not paths["tls_cert"].exists():
        paths["tls_key"].unlink(missing_ok=True)
        paths["tls_cert"].unlink(missing_ok=True)
        key_pem, cert_pem = _self_signed(party, names, dt.datetime.now(dt.UTC))
        _write_private(paths["tls_key"], key_pem)
        _write_private(paths["tls_cert"], cert_pem)
    return load_keys(state_dir)


def load_keys(state_dir: Path) -> NodeKeys:
    """Load the keys ``init_keys`` made.

    Raises:
        ConfigError: if a file is missing, unreadable, world/group-readable, or malformed.
    """
    paths = {k: state_dir / v for k, v in _FILES.items()}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise ConfigError(f"missing key files {', '.join(missing)}; run `init` first")
    try:
        signing = SigningKey.from_seed(_read(paths["signing"]))
        sealing = sealing_private_key(_read(paths["sealing"]))
        _read(paths["tls_key"])
        cert_pem = _read(paths["tls_cert"])
        x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, OSError, CryptoError) as exc:
        raise ConfigError(f"cannot load keys from {state_dir}: {exc}") from exc
    return NodeKeys(state_dir=state_dir, signing=signing, sealing=sealing, tls_cert_pem=cert_pem)
