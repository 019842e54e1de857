"""One-shot calls to a peer node's ``POST /peer/v1/calls/{name}`` over pinned mutual TLS.

The same trust as :class:`node.peer.PeerClient` (the pinned certificate is the only trust
anchor, and the presented certificate's fingerprint is re-checked), but one HTTP round trip per call
and nothing cached on either side: for real-time scoring, where the job data plane's resumable chunks
would add a status round trip and keep every answer until the job ends. Every request body is written
to this node's egress ledger before it is sent.
"""

from __future__ import annotations

import httpx

from node.keys import NodeKeys
from node.ledger import EgressLedger
from node.peer import PeerError, PinnedPeers, check_presented, pinned_http
from protocols.wire.control import PartyPublic

__all__ = ["PeerCaller"]


class PeerCaller:
    """Calls one peer's one-shot handlers (thread-safe; keeps its connections alive).

    Args:
        peer: the peer as registered with the coordinator (URL and fingerprint).
        keys: this node's keys (client certificate).
        pins: pinned certificates; the peer's is fetched and checked on first use.
        ledger: egress ledger; every request body is recorded before it is sent.
        timeout: per-call timeout in seconds.
    """

    def __init__(self, peer: PartyPublic, keys: NodeKeys, pins: PinnedPeers, ledger: EgressLedger, *,
                 timeout: float = 10.0) -> None:
        self.peer, self._ledger = peer, ledger
        self._http = pinned_http(peer, keys, pins, timeout=timeout)

    def call(self, name: str, body: bytes, *, kind: str) -> bytes:
        """Send ``body`` to the peer's call ``name`` and return its answer.

        Raises:
            PeerRefused: the peer presented a certificate that is not the registered one.
            PeerError: transport failure or refusal (``http_status`` set when the peer answered).
        """
        self._ledger.record(peer=self.peer.name, kind=kind, payload=body, ref=f"calls/{name}")
        try:
            response = self._http.post(f"/calls/{name}", content=body,
                                       headers={"Content-Type": "application/octet-stream"})
        except httpx.TransportError as exc:
            raise PeerError(f"cannot call {self.peer.name}: {type(exc).__name__}") from exc
        check_presented(response, self.peer)
        if response.is_error:
            try:
                detail = response.json().get("detail", "")
            except ValueError:
                detail = response.text[:200]
            raise PeerError(f"{self.peer.name} refused {name}: HTTP {response.status_code}: {detail}",
                            http_status=response.status_code)
        return response.content

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
