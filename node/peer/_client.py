"""The send side: messages to one peer party, sent as resumable chunks over pinned mutual TLS."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import httpx

from node.keys import NodeKeys
from node.ledger import EgressLedger
from protocols.wire.control import PartyPublic

from ._pins import PinnedPeers, check_presented, pinned_http
from ._wire import (
    CHANNEL_PATTERN,
    H_ATTEMPT,
    H_CHUNK,
    H_CHUNKS,
    H_DIGEST,
    H_KIND,
    H_RESP_CHUNKS,
    H_RESP_DIGEST,
    PeerError,
)


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
        attempt: the job attempt this client sends for (``X-Tandem-Attempt`` on every request, and in
            every ledger record); the runner binds it (:meth:`bind_attempt`). A receiver running a later
            attempt refuses the frames (410) and :meth:`exchange` raises ``PeerError``: stop the attempt.
    """

    def __init__(
        self, own_party: str, peer: PartyPublic, keys: NodeKeys, pins: PinnedPeers, ledger: EgressLedger, *,
        chunk_bytes: int = 4 * 1024 * 1024, retries: int = 5, backoff: float = 0.5, timeout: float = 120.0,
        attempt: int | None = None,
    ) -> None:
        self.own_party, self.peer = own_party, peer
        self.attempt = attempt
        self._ledger, self._chunk_bytes = ledger, chunk_bytes
        self._retries, self._backoff = max(1, retries), backoff
        self._http = pinned_http(peer, keys, pins, timeout=timeout)

    def bind_attempt(self, attempt: int) -> None:
        """Send every further frame as part of job attempt ``attempt``."""
        self.attempt = attempt

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> PeerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, *, content: bytes = b"", headers: dict[str, str] | None = None,
              record: Callable[[], None] | None = None) -> httpx.Response:
        wait = self._backoff
        if self.attempt is not None:
            headers = {**(headers or {}), H_ATTEMPT: str(self.attempt)}
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
            check_presented(response, self.peer)
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
        check_presented(response, self.peer)
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
                                ref=f"{channel}/{seq}/{index + 1}of{count}", attempt=self.attempt)

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
