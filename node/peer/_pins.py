"""Trust: peer certificates pinned through the coordinator's registry, and the TLS contexts built on them."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from node.keys import NodeKeys, tls_fingerprint
from protocols.wire.control import PartyPublic

from ._wire import PEER_PREFIX, PeerError, PeerRefused

logger = logging.getLogger(__name__)


def _der_to_pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def _base_context(purpose: ssl.Purpose, keys: NodeKeys) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(keys.tls_cert_path), str(keys.tls_key_path))
    return ctx


def fetch_certificate(node_url: str, keys: NodeKeys, *, timeout: float = 10.0) -> bytes:
    """Handshake with ``node_url`` *without* verifying it and return the certificate it presents (PEM).

    The result is untrusted until its fingerprint is compared with the registry (``PinnedPeers.pin``).
    """
    parts = urlsplit(node_url)
    host, port = parts.hostname or "", parts.port or 443
    ctx = _base_context(ssl.Purpose.SERVER_AUTH, keys)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise PeerError(f"cannot reach peer node at {node_url}: {type(exc).__name__}") from exc
    if not der:
        raise PeerError(f"peer node at {node_url} presented no certificate")
    return _der_to_pem(der)


class PinnedPeers:
    """Peer certificates accepted because their fingerprint matches the coordinator's registry.

    Pins live in ``pins_dir/<party>.pem``. Server TLS contexts attached with ``attach`` learn every
    new pin at once (OpenSSL consults the context's store at each handshake).
    """

    def __init__(self, pins_dir: Path, keys: NodeKeys, *, own_party: str) -> None:
        self._dir, self._keys, self._own = pins_dir, keys, own_party
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._certs: dict[str, bytes] = {}
        self._contexts: list[ssl.SSLContext] = []
        for path in sorted(self._dir.glob("*.pem")):
            self._certs[path.stem] = path.read_bytes()

    def cert(self, party: str) -> bytes | None:
        """The pinned PEM certificate of ``party``, if any."""
        with self._lock:
            return self._certs.get(party)

    def party_for(self, fingerprint: str) -> str | None:
        """The party whose pinned certificate has ``fingerprint``."""
        with self._lock:
            for party, pem in self._certs.items():
                if tls_fingerprint(pem) == fingerprint:
                    return party
        return None

    def pin(self, party: PartyPublic, cert_pem: bytes) -> None:
        """Pin ``cert_pem`` for ``party`` if its fingerprint is the registered one.

        Raises:
            PeerRefused: if the fingerprints differ.
        """
        got = tls_fingerprint(cert_pem)
        if got != party.tls_fingerprint:
            raise PeerRefused(
                f"certificate presented by {party.name} at {party.node_url} has fingerprint {got[:16]}…, "
                f"but the coordinator registry says {party.tls_fingerprint[:16]}…; refusing to talk to it"
            )
        with self._lock:
            if self._certs.get(party.name) == cert_pem:
                return
            self._certs[party.name] = cert_pem
            path = self._dir / f"{party.name}.pem"
            path.write_bytes(cert_pem)
            path.chmod(0o600)
            for ctx in self._contexts:
                ctx.load_verify_locations(cadata=cert_pem.decode("ascii"))
        logger.info("pinned TLS certificate of party %s (%s…)", party.name, got[:16])

    def ensure(self, party: PartyPublic, *, timeout: float = 10.0) -> bytes:
        """Return ``party``'s certificate, fetching and pinning it when the pin is missing or stale.

        Raises:
            PeerRefused: if the certificate the peer presents does not match the registry.
            PeerError: if the peer cannot be reached.
        """
        current = self.cert(party.name)
        if current is not None and tls_fingerprint(current) == party.tls_fingerprint:
            return current
        pem = fetch_certificate(party.node_url, self._keys, timeout=timeout)
        self.pin(party, pem)
        return pem

    def refresh(self, parties: list[PartyPublic], *, timeout: float = 5.0) -> list[str]:
        """Pin every other registered party that is reachable; return the names now pinned."""
        pinned = []
        for party in parties:
            if party.name == self._own:
                continue
            try:
                self.ensure(party, timeout=timeout)
                pinned.append(party.name)
            except PeerError as exc:
                logger.warning("cannot pin party %s yet: %s", party.name, exc)
        return pinned

    def attach(self, ctx: ssl.SSLContext) -> None:
        """Make ``ctx`` trust every current and future pin."""
        with self._lock:
            self._contexts.append(ctx)
            for pem in self._certs.values():
                ctx.load_verify_locations(cadata=pem.decode("ascii"))


def server_ssl_context(keys: NodeKeys, pins: PinnedPeers) -> ssl.SSLContext:
    """TLS 1.3 server context: own certificate, client certificate required, trust = pinned peers only."""
    ctx = _base_context(ssl.Purpose.CLIENT_AUTH, keys)
    ctx.verify_mode = ssl.CERT_REQUIRED
    pins.attach(ctx)
    return ctx


def client_ssl_context(keys: NodeKeys, peer_cert_pem: bytes) -> ssl.SSLContext:
    """TLS 1.3 client context: own certificate as client identity, trust = the one pinned peer certificate."""
    ctx = _base_context(ssl.Purpose.SERVER_AUTH, keys)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    ctx.load_verify_locations(cadata=peer_cert_pem.decode("ascii"))
    return ctx


def pinned_http(peer: PartyPublic, keys: NodeKeys, pins: PinnedPeers, *, timeout: float) -> httpx.Client:
    """An HTTP client for ``peer``'s data plane that trusts only its pinned certificate (pinned on first use).

    Raises:
        PeerRefused: if the certificate the peer presents does not match the registry.
        PeerError: if the peer cannot be reached to fetch its certificate.
    """
    pem = pins.ensure(peer)
    return httpx.Client(base_url=peer.node_url.rstrip("/") + PEER_PREFIX, verify=client_ssl_context(keys, pem),
                        timeout=timeout, trust_env=False)


def check_presented(response: httpx.Response, peer: PartyPublic) -> None:
    """Re-check that the certificate presented for ``response`` is ``peer``'s registered one.

    Raises:
        PeerRefused: if the presented certificate's fingerprint is not the registry's.
    """
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    der = ssl_object.getpeercert(True) if ssl_object is not None else None
    if der is not None and tls_fingerprint(der) != peer.tls_fingerprint:
        raise PeerRefused(f"peer {peer.name} presented a certificate that is not the registered one")
