"""A private certificate authority for evaluation: ``tandem-coordinator certs init | issue``.

``init_ca(dir)`` writes ``ca.crt`` and ``ca.key`` (mode 0600) once; run again it changes nothing.
``issue(dir, names, prefix)`` writes ``PREFIX.crt`` and ``PREFIX.key`` (0600): an EC P-256 server
certificate signed by that CA, naming every ``names`` entry (DNS name or IP address) as a subject
alternative name. The same certificates serve the coordinator's HTTPS (``TANDEM_COORD_TLS_CERT`` /
``TANDEM_COORD_TLS_KEY``) and the SuperLink's gRPC TLS (``TANDEM_COORD_TRAINING_TLS_CA`` = ``ca.crt``,
``TANDEM_COORD_TRAINING_TLS_CERT`` / ``_KEY``); nodes verify both with ``ca.crt``.

Production operators bring certificates from their own PKI; this helper is for evaluation and for
the compose deployments' first start. Whoever reads ``ca.key`` can issue certificates every node
accepts for the coordinator, so keep it off the serving host once the certificates exist.

What each party learns: nothing; this module only writes files.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocols.wire.errors import ConfigError

__all__ = ["CA_CERT", "CA_KEY", "CaFiles", "IssuedFiles", "build_ca", "build_server_cert", "init_ca", "issue",
           "load_ca", "san_entry", "spki"]

CA_CERT, CA_KEY = "ca.crt", "ca.key"
CA_DAYS, SERVER_DAYS = 3650, 397
_BACKDATE = datetime.timedelta(minutes=5)
_DNS_NAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$", re.I)


@dataclass(frozen=True)
class CaFiles:
    """The CA's files and whether ``init_ca`` created them just now."""

    cert: Path
    key: Path
    created: bool


@dataclass(frozen=True)
class IssuedFiles:
    """A certificate, its key and the CA that signed it."""

    cert: Path
    key: Path
    ca: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tandem"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def san_entry(name: str) -> x509.GeneralName:
    """One subject alternative name: an IP address if ``name`` parses as one, else a DNS name.

    Raises:
        ConfigError: naming ``--name`` when it is neither.
    """
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not _DNS_NAME.match(name) or len(name) > 253:
        raise ConfigError(f"--name {name!r} is neither a DNS name nor an IP address; give the host name or "
                          "address nodes dial (e.g. --name coordinator.example.org --name 10.0.0.5)")
    return x509.DNSName(name.lower())


def build_ca(now: datetime.datetime, *, days: int = CA_DAYS,
             common_name: str = "Tandem private CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh self-signed CA key and certificate (path length 0: it signs server certificates only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def build_server_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, names: list[str],
                      now: datetime.datetime, *, days: int = SERVER_DAYS,
                      ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh server key and certificate for ``names`` signed by the CA (never valid past the CA).

    Raises:
        ConfigError: no name, or a name that is neither a DNS name nor an IP address.
    """
    if not names:
        raise ConfigError("give at least one --name: the host name or address nodes dial")
    san = x509.SubjectAlternativeName([san_entry(n) for n in dict.fromkeys(names)])
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(not_after)
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temporary file with ``mode`` and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def init_ca(directory: Path, *, now: datetime.datetime | None = None, days: int = CA_DAYS) -> CaFiles:
    """Create the CA in ``directory`` (mode 0700) unless it exists; an existing one is checked, never replaced.

    Raises:
        ConfigError: only one of ``ca.crt`` / ``ca.key`` exists, or they do not belong together.
    """
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() or key_path.exists():
        load_ca(directory)
        return CaFiles(cert_path, key_path, created=False)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key, cert = build_ca(now or datetime.datetime.now(datetime.UTC), days=days)
    _write_atomic(key_path, _key_pem(key), 0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return CaFiles(cert_path, key_path, created=True)


def load_ca(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA key and certificate in ``directory``.

    Raises:
        ConfigError: a file is missing or unreadable, or the key does not match the certificate.
    """
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    missing = [p.name for p in (cert_path, key_path) if not p.exists()]
    if len(missing) == 1:
        raise ConfigError(f"--dir {directory}: {missing[0]} is missing beside the other CA file; restore it from "
                          f"your backup, or remove {directory} and run certs init again (then reissue every "
                          "certificate)")
    if missing:
        raise ConfigError(f"--dir {directory}: no CA there; create one with: tandem-coordinator certs init --dir "
                          f"{directory}")
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"--dir {directory}: cannot read the CA ({type(exc).__name__}: {exc}); fix the files' "
                          "permissions or restore them") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or spki(key.public_key()) != spki(cert.public_key()):
        raise ConfigError(f"--dir {directory}: {CA_KEY} does not belong to {CA_CERT}; restore the pair from your "
                          "backup")
    return key, cert


def spki(public_key: PublicKeyTypes) -> bytes:
    """DER SubjectPublicKeyInfo of a public key (to compare a key with a certificate's)."""
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def issue(directory: Path, names: list[str], out: Path, *, days: int = SERVER_DAYS, force: bool = False,
          now: datetime.datetime | None = None) -> IssuedFiles:
    """Issue ``OUT.crt`` and ``OUT.key`` (0600) for ``names``, signed by the CA in ``directory``.

    Args:
        directory: the CA directory (``certs init --dir``).
        names: DNS names and IP addresses clients dial; the first is also the common name.
        out: path prefix of the two files.
        days: validity (capped at the CA's).
        force: replace existing files (rotation); without it existing files are refused.
        now: the issuing time (tests).

    Raises:
        ConfigError: no CA, a bad name, or existing files without ``force``.
    """
    ca_key, ca_cert = load_ca(directory)
    files = IssuedFiles(out.with_name(out.name + ".crt"), out.with_name(out.name + ".key"), directory / CA_CERT)
    existing = [str(p) for p in (files.cert, files.key) if p.exists()]
    if existing and not force:
        raise ConfigError(f"--out {out}: {', '.join(existing)} exists; pass --force to replace it (rotation) or "
                          "choose another --out")
    key, cert = build_server_cert(ca_key, ca_cert, names, now or datetime.datetime.now(datetime.UTC), days=days)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(files.key, _key_pem(key), 0o600)
    _write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return files
