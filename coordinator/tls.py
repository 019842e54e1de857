"""HTTPS for the coordinator itself: start-up checks of its certificate and key, and the TLS 1.3 server context.

``check_server_files`` refuses, before anything is created or served, a certificate or key that is
missing, unreadable, not PEM, not a pair, expired or not yet valid; each error names the setting
(``TANDEM_COORD_TLS_CERT`` / ``TANDEM_COORD_TLS_KEY``) and the fix. ``server_context`` is what uvicorn
serves with: TLS 1.3 minimum, so a client offering only TLS 1.2 or older fails its handshake.
``check_exposure`` refuses plain HTTP on a non-loopback interface unless the operator declares a
TLS-terminating reverse proxy (``TANDEM_COORD_INSECURE_HTTP=1``).

What each party learns: a client learns the coordinator's certificate (names, issuer, validity).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from coordinator.certs import spki
from protocols.wire.errors import ConfigError

__all__ = ["CERT_SETTING", "KEY_SETTING", "MIN_TLS_VERSION", "check_exposure", "check_server_files",
           "check_training_files", "is_loopback", "server_context"]

CERT_SETTING, KEY_SETTING = "TANDEM_COORD_TLS_CERT", "TANDEM_COORD_TLS_KEY"
MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_3
_ISSUE = "tandem-coordinator certs issue --dir CA_DIR --name <host nodes dial> --out PREFIX"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (what only this machine can reach)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, *, tls: bool, insecure_http: bool) -> None:
    """Refuse to serve plain HTTP on ``host`` unless it is loopback or a reverse proxy is declared.

    Raises:
        ConfigError: naming ``TANDEM_COORD_TLS_CERT`` and the alternatives.
    """
    if tls or insecure_http or is_loopback(host):
        return
    raise ConfigError(f"refusing to serve plain HTTP on {host}: API tokens and session cookies would cross the "
                      f"network in clear. Set {CERT_SETTING} and {KEY_SETTING} (e.g. from: {_ISSUE}), or bind "
                      "127.0.0.1, or, only behind a TLS-terminating reverse proxy, set TANDEM_COORD_INSECURE_HTTP=1")


def check_training_files(ca: Path | None, cert: Path | None, key: Path | None) -> None:
    """Check the SuperLink's ``TANDEM_COORD_TRAINING_TLS_*`` files as the coordinator's own, and the CA with them.

    All three unset is fine (the launcher generates loopback-only files); some set and some not is refused,
    rather than silently serving generated files nodes do not trust.

    Raises:
        ConfigError: naming the setting and the fix.
    """
    given = {"TANDEM_COORD_TRAINING_TLS_CA": ca, "TANDEM_COORD_TRAINING_TLS_CERT": cert,
             "TANDEM_COORD_TRAINING_TLS_KEY": key}
    if all(v is None for v in given.values()):
        return
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} unset while the other SuperLink TLS files are set; set all three "
                          "(ca.crt and a certificate and key from tandem-coordinator certs issue) or none")
    assert ca is not None and cert is not None and key is not None
    served = check_server_files(cert, key, settings=("TANDEM_COORD_TRAINING_TLS_CERT", "TANDEM_COORD_TRAINING_TLS_KEY"))
    try:
        authority = x509.load_pem_x509_certificate(_read(ca, "TANDEM_COORD_TRAINING_TLS_CA"))
        served.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(f"TANDEM_COORD_TRAINING_TLS_CA: {ca} is not the CA that signed {cert}; SuperNodes verify "
                          "the SuperLink with it, so give the ca.crt that issued the certificate") from None


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path} ({exc.strerror or type(exc).__name__}); give the path of "
                          "a readable PEM file (the coordinator's user needs read access)") from None


def check_server_files(cert_path: Path, key_path: Path, *, now: datetime.datetime | None = None,
                       settings: tuple[str, str] = (CERT_SETTING, KEY_SETTING)) -> x509.Certificate:
    """The server certificate, after checking it and its key can serve now.

    Args:
        cert_path: PEM certificate (the server's first, any chain after it).
        key_path: its unencrypted PEM private key.
        now: the time to check validity at (tests).
        settings: the names of the certificate's and the key's settings, for the errors.

    Raises:
        ConfigError: naming the setting, what is wrong and the fix.
    """
    cert_setting, key_setting = settings
    try:
        chain = x509.load_pem_x509_certificates(_read(cert_path, cert_setting))
    except ValueError:
        raise ConfigError(f"{cert_setting}: {cert_path} is not a PEM certificate; give the server certificate "
                          f"(-----BEGIN CERTIFICATE-----), e.g. from: {_ISSUE}") from None
    try:
        key = serialization.load_pem_private_key(_read(key_path, key_setting), password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{key_setting}: {key_path} is not an unencrypted PEM private key; give the key issued "
                          "with the certificate (PREFIX.key)") from None
    cert = chain[0]
    if spki(key.public_key()) != spki(cert.public_key()):
        raise ConfigError(f"{key_setting}: {key_path} does not match the certificate in {cert_setting} "
                          f"({cert_path}); give the key issued with that certificate, or issue both again: {_ISSUE}")
    now = now or datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc <= now:
        raise ConfigError(f"{cert_setting}: {cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
                          f"issue a new one ({_ISSUE} --force) and restart")
    if cert.not_valid_before_utc > now:
        raise ConfigError(f"{cert_setting}: {cert_path} is not valid before "
                          f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (now {now:%Y-%m-%d %H:%M} UTC); check "
                          "this machine's clock (NTP) or the issuing machine's")
    return cert


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server context over the certificate (with any chain in the file) and key: TLS 1.3 or nothing."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_TLS_VERSION
    context.load_cert_chain(str(cert_path), str(key_path))
    return context
