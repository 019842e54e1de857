"""The node-to-node data plane: mutual TLS pinned through the coordinator's registry, chunked exchanges.

Trust. There is no CA. Each node has a self-signed certificate whose SHA-256 (``tls_fingerprint``)
its party registered with the coordinator. ``PinnedPeers`` obtains a peer's certificate (from a local
pin file, or by a TLS handshake with the peer's ``node_url``) and accepts it only if its fingerprint
equals the registry's; from then on that certificate is the *only* trust anchor for that peer:

* as a client, httpx verifies the server against the pinned certificate alone (and the hostname in
  its SAN), and re-checks the fingerprint of the certificate actually presented;
* as a server, the TLS context requires a client certificate and trusts only pinned certificates;
  the app then maps the presented certificate's fingerprint to the party it is pinned for, so a
  sender's identity comes from TLS, never from a header.

A peer whose certificate is not pinned cannot complete a handshake, and a server whose certificate
differs from the registry is refused before any byte of payload is sent. Trust rests on the
coordinator's registry being honest about fingerprints (it is the pinning authority) — the same
assumption as the rest of the design (a coordinator that does not collude with either node).

Messages. A message ``(job_id, channel, seq)`` is sent as chunks, ``POST
/peer/v1/jobs/{job_id}/{channel}/{seq}`` with headers ``X-Tandem-Kind``, ``X-Tandem-Chunk`` (index),
``X-Tandem-Chunks`` (total) and ``X-Tandem-Digest`` (SHA-256 of the whole message). Chunks are
idempotent: re-sending one with the same bytes is a no-op, so a sender resumes after a failure by
asking ``GET .../{seq}`` which chunks arrived and sending the rest. When the last chunk arrives the
receiver checks the digest, runs the handler registered for the channel exactly once, and answers
with the first chunk of the response (``X-Tandem-Response-Chunks``, ``X-Tandem-Response-Digest``);
further response chunks are ``GET .../{seq}/response/{index}``. Every body either side sends —
request chunks, responses, status and errors — is written to the sender's egress ledger first.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from node.keys import NodeKeys, tls_fingerprint
from node.ledger import EgressLedger
from protocols.wire.control import PartyPublic
from protocols.wire.errors import ProtocolError, RemoteProtocolError

__all__ = [
    "CHANNEL_PATTERN",
    "ChunkOutcome",
    "PEER_PREFIX",
    "PeerClient",
    "PeerError",
    "PeerHandler",
    "PeerInbox",
    "PeerMessage",
    "PeerRefused",
    "PinnedPeers",
    "client_ssl_context",
    "fetch_certificate",
    "server_ssl_context",
]

logger = logging.getLogger(__name__)

PEER_PREFIX = "/peer/v1"
CHANNEL_PATTERN = re.compile(r"^[a-z][a-z0-9_.\-]{0,62}$")
H_KIND, H_CHUNK, H_CHUNKS, H_DIGEST = "X-Tandem-Kind", "X-Tandem-Chunk", "X-Tandem-Chunks", "X-Tandem-Digest"
H_RESP_CHUNKS, H_RESP_DIGEST = "X-Tandem-Response-Chunks", "X-Tandem-Response-Digest"


class PeerError(ProtocolError):
    """A data-plane exchange failed (transport, refusal by the peer, or a bad answer).

    ``http_status`` is the peer's HTTP status when it refused (``None`` for transport failures), so a
    protocol driver can tell "not ready yet" (409, 503) from "refused" (4xx) from "gone" (``None``).
    """

    status_hint = 502

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class PeerRefused(PeerError):
    """A peer's certificate does not match the registry; nothing was sent."""

    status_hint = 403


# ------------------------------------------------------------------------------------------ trust


def _pem_to_der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


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


# ---------------------------------------------------------------------------------- receive side


@dataclass(frozen=True)
class PeerMessage:
    """A complete message delivered to a channel handler."""

    job_id: int
    channel: str
    seq: int
    kind: str
    sender: str
    body: bytes


PeerHandler = Callable[[PeerMessage], bytes]


@dataclass(frozen=True)
class ChunkOutcome:
    """What the receiver answers to a chunk: progress, or the finished response."""

    received: int
    complete: bool
    response: bytes = b""


@dataclass
class _Pending:
    kind: str
    count: int
    digest: str
    chunks: dict[int, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.chunks.values())


_Key = tuple[str, int, str, int]


class PeerInbox:
    """Receiver state: handlers per channel, active jobs, partial messages and finished responses.

    Messages are held in memory until complete; ``max_message_bytes`` bounds each one. Responses are
    kept until the job is deactivated, so a retried final chunk gets the same answer without running
    the handler twice.
    """

    def __init__(self, *, max_chunk_bytes: int, max_message_bytes: int) -> None:
        self.max_chunk_bytes, self.max_message_bytes = max_chunk_bytes, max_message_bytes
        self._handlers: dict[str, PeerHandler] = {}
        self._active: set[int] = set()
        self._pending: dict[_Key, _Pending] = {}
        self._done: dict[_Key, tuple[str, bytes]] = {}
        self._lock = threading.Lock()

    def register_handler(self, channel: str, handler: PeerHandler) -> None:
        """Route complete messages on ``channel`` to ``handler`` (its return value is the response)."""
        if not CHANNEL_PATTERN.match(channel):
            raise ValueError(f"bad channel name {channel!r}")
        with self._lock:
            self._handlers[channel] = handler

    def activate(self, job_id: int) -> None:
        """Accept messages for ``job_id`` (the runner calls this after verifying the approval)."""
        with self._lock:
            self._active.add(job_id)

    def deactivate(self, job_id: int) -> None:
        """Refuse further messages for ``job_id`` and drop everything buffered for it."""
        with self._lock:
            self._active.discard(job_id)
            for store in (self._pending, self._done):
                for key in [k for k in store if k[1] == job_id]:
                    del store[key]

    def _check_open(self, job_id: int, channel: str) -> PeerHandler:
        with self._lock:
            if job_id not in self._active:
                raise ProtocolError(f"job {job_id} is not running on this node (yet)", status_hint=409)
            handler = self._handlers.get(channel)
        if handler is None:  # the job is open but its driver has not registered this channel: not ready yet
            raise ProtocolError(f"no handler for channel {channel!r} on this node (yet)", status_hint=409)
        return handler

    def status(self, key: _Key) -> dict[str, Any]:
        """Which chunks of a message arrived, and whether it is complete."""
        with self._lock:
            if key in self._done:
                return {"complete": True, "received": []}
            pending = self._pending.get(key)
        return {"complete": False, "received": sorted(pending.chunks) if pending else []}

    def response(self, key: _Key) -> tuple[str, bytes]:
        """The message kind and the handler's response, for a complete message."""
        with self._lock:
            if key not in self._done:
                raise ProtocolError("no response for this message", status_hint=404)
            return self._done[key]

    def receive(self, key: _Key, kind: str, index: int, count: int, digest: str, chunk: bytes) -> ChunkOutcome:
        """Store one chunk; on the last one, check the digest and run the channel handler once."""
        handler = self._check_open(key[1], key[2])
        self._validate(index, count, digest, chunk)
        with self._lock:
            if key in self._done:
                return ChunkOutcome(count, True, self._done[key][1])
            pending = self._pending.setdefault(key, _Pending(kind, count, digest))
        with pending.lock:
            return self._store(key, pending, handler, kind, index, count, digest, chunk)

    def _validate(self, index: int, count: int, digest: str, chunk: bytes) -> None:
        if not 0 <= index < count:
            raise RemoteProtocolError("chunk index out of range")
        if count > self.max_message_bytes // self.max_chunk_bytes + 1:
            raise ProtocolError(f"message larger than {self.max_message_bytes} bytes", status_hint=413)
        if len(chunk) > self.max_chunk_bytes:
            raise ProtocolError(f"chunk larger than {self.max_chunk_bytes} bytes", status_hint=413)
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise RemoteProtocolError(f"{H_DIGEST} must be 64 hex characters")

    def _store(
        self, key: _Key, pending: _Pending, handler: PeerHandler, kind: str, index: int, count: int, digest: str,
        chunk: bytes,
    ) -> ChunkOutcome:
        with self._lock:
            if key in self._done:
                return ChunkOutcome(count, True, self._done[key][1])
        if (pending.kind, pending.count, pending.digest) != (kind, count, digest):
            raise ProtocolError("chunk does not belong to the message already being received", status_hint=409)
        if index in pending.chunks:
            if pending.chunks[index] != chunk:
                raise ProtocolError(f"chunk {index} was already received with different bytes", status_hint=409)
        elif pending.size + len(chunk) > self.max_message_bytes:
            raise ProtocolError(f"message larger than {self.max_message_bytes} bytes", status_hint=413)
        pending.chunks[index] = chunk
        if len(pending.chunks) < count:
            return ChunkOutcome(len(pending.chunks), False)
        return self._complete(key, pending, handler)

    def _complete(self, key: _Key, pending: _Pending, handler: PeerHandler) -> ChunkOutcome:
        body = b"".join(pending.chunks[i] for i in range(pending.count))
        with self._lock:
            self._pending.pop(key, None)
        if hashlib.sha256(body).hexdigest() != pending.digest:
            raise RemoteProtocolError("message digest does not match its chunks; resend the message")
        sender, job_id, channel, seq = key
        response = handler(PeerMessage(job_id, channel, seq, pending.kind, sender, body))
        with self._lock:
            self._done[key] = (pending.kind, response)
        return ChunkOutcome(pending.count, True, response)


# ------------------------------------------------------------------------------------- send side


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


class PeerClient:
    """Sends messages to one peer party over pinned mutual TLS and returns its responses.

    Args:
        own_party: this node's party name (for logs).
        peer: the peer as registered with the coordinator (URL and fingerprint).
        keys: this node's keys (client certificate).
        pins: pinned certificates; the peer's is fetched and checked on first use.
        ledger: egress ledger; every chunk is recorded before it is sent.
        chunk_bytes: request chunk size (must not exceed the receiver's limit).
        retries: attempts per request on transport errors or "not ready here yet" (409: the job or its
            channel is not open on the peer yet).
        backoff: first wait between attempts, in seconds (doubles each time).
        timeout: per-request timeout, in seconds.
    """

    def __init__(
        self, own_party: str, peer: PartyPublic, keys: NodeKeys, pins: PinnedPeers, ledger: EgressLedger, *,
        chunk_bytes: int = 4 * 1024 * 1024, retries: int = 5, backoff: float = 0.5, timeout: float = 120.0,
    ) -> None:
        self.own_party, self.peer = own_party, peer
        self._ledger, self._chunk_bytes = ledger, chunk_bytes
        self._retries, self._backoff = max(1, retries), backoff
        self._pem = pins.ensure(peer)
        self._http = httpx.Client(
            base_url=peer.node_url.rstrip("/") + PEER_PREFIX, verify=client_ssl_context(keys, self._pem),
            timeout=timeout, trust_env=False,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> PeerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_presented(self, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        der = ssl_object.getpeercert(True) if ssl_object is not None else None
        if der is not None and tls_fingerprint(der) != self.peer.tls_fingerprint:
            raise PeerRefused(f"peer {self.peer.name} presented a certificate that is not the registered one")

    def _send(self, method: str, path: str, *, content: bytes = b"", headers: dict[str, str] | None = None,
              record: Callable[[], None] | None = None) -> httpx.Response:
        wait = self._backoff
        for attempt in range(1, self._retries + 1):
            if record is not None:
                record()
            try:
                response = self._http.request(method, path, content=content, headers=headers)
            except httpx.TransportError as exc:
                if attempt == self._retries or "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise PeerError(f"cannot exchange with {self.peer.name}: {type(exc).__name__}: {exc}") from exc
                time.sleep(wait)
                wait *= 2
                continue
            self._check_presented(response)
            if response.status_code == 409 and "(yet)" in response.text and attempt < self._retries:
                time.sleep(wait)
                wait *= 2
                continue
            return response
        raise PeerError(f"{self.peer.name} did not accept the message after {self._retries} attempts")

    def _raise_for(self, response: httpx.Response, what: str) -> None:
        if response.is_error:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text[:200]
            raise PeerError(f"{self.peer.name} refused {what}: HTTP {response.status_code}: {detail}",
                            http_status=response.status_code)

    def healthz(self) -> dict[str, Any]:
        """``GET /healthz`` on the peer (mutual TLS)."""
        response = self._send("GET", self.peer.node_url.rstrip("/") + "/healthz")
        self._check_presented(response)
        self._raise_for(response, "healthz")
        return dict(response.json())

    def received(self, job_id: int, channel: str, seq: int) -> dict[str, Any]:
        """Ask the peer which chunks of message ``(job_id, channel, seq)`` it holds."""
        response = self._send("GET", f"/jobs/{job_id}/{channel}/{seq}")
        self._raise_for(response, "a status query")
        return dict(response.json())

    def exchange(self, job_id: int, channel: str, seq: int, body: bytes, *, kind: str = "data") -> bytes:
        """Send ``body`` as message ``(job_id, channel, seq)`` and return the peer handler's response.

        Resumable: calling again with the same arguments sends only the chunks the peer lacks, and a
        message the peer already handled is answered from its cache without running the handler again.

        Raises:
            PeerRefused: if the peer's certificate does not match the registry.
            PeerError: on transport failure, refusal by the peer, or a corrupted response.
        """
        if not CHANNEL_PATTERN.match(channel):
            raise ValueError(f"bad channel name {channel!r}")
        digest = hashlib.sha256(body).hexdigest()
        chunks = _split(body, self._chunk_bytes)
        state = self.received(job_id, channel, seq)
        if state["complete"]:
            return self._collect(job_id, channel, seq, None)
        have = set(state["received"])
        for index, chunk in enumerate(chunks):
            if index in have:
                continue
            response = self._post_chunk(job_id, channel, seq, kind, index, len(chunks), digest, chunk)
            if response.status_code == 200:
                return self._collect(job_id, channel, seq, response)
        raise PeerError(f"{self.peer.name} holds every chunk of {channel}/{seq} but did not complete it; resend")

    def _post_chunk(
        self, job_id: int, channel: str, seq: int, kind: str, index: int, count: int, digest: str, chunk: bytes
    ) -> httpx.Response:
        headers = {H_KIND: kind, H_CHUNK: str(index), H_CHUNKS: str(count), H_DIGEST: digest,
                   "Content-Type": "application/octet-stream"}

        def record() -> None:
            self._ledger.record(peer=self.peer.name, kind=kind, payload=chunk, job_id=job_id,
                                ref=f"{channel}/{seq}/{index + 1}of{count}")

        response = self._send("POST", f"/jobs/{job_id}/{channel}/{seq}", content=chunk, headers=headers,
                              record=record)
        self._raise_for(response, f"chunk {index + 1}/{count} of {channel}/{seq}")
        return response

    def _response_chunk(self, job_id: int, channel: str, seq: int, index: int) -> httpx.Response:
        response = self._send("GET", f"/jobs/{job_id}/{channel}/{seq}/response/{index}")
        self._raise_for(response, f"response chunk {index + 1} of {channel}/{seq}")
        return response

    def _collect(self, job_id: int, channel: str, seq: int, first: httpx.Response | None) -> bytes:
        if first is None:
            first = self._response_chunk(job_id, channel, seq, 0)
        try:
            count = int(first.headers[H_RESP_CHUNKS])
            digest = first.headers[H_RESP_DIGEST]
        except (KeyError, ValueError) as exc:
            raise PeerError(f"{self.peer.name} sent a response without chunk headers") from exc
        parts = [first.content]
        for index in range(1, count):
            parts.append(self._response_chunk(job_id, channel, seq, index).content)
        body = b"".join(parts)
        if hashlib.sha256(body).hexdigest() != digest:
            raise PeerError(f"response from {self.peer.name} does not match its digest")
        return body
