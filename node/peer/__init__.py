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
further response chunks are ``GET .../{seq}/response/{index}``. Every request of a job's attempt names
it (``X-Tandem-Attempt``): the receiver refuses a retried job's stale attempt (410, see ``PeerInbox``).
Every body either side sends —
request chunks, responses, status and errors — is written to the sender's egress ledger first.

Binding. A job accepts frames only from its signed counterparty (``PeerInbox.activate(job_id,
peer=...)``): a frame from any other pinned party is refused with 403 before its body is read, and
recorded (``PeerInbox.refusals``). Incomplete messages are bounded per sender and job (count and
bytes), so no peer can make the receiver hold more than ``max_pending_bytes`` for a job.
"""

from ._client import PeerClient
from ._inbox import (
    DEFAULT_MAX_PENDING_BYTES,
    DEFAULT_MAX_PENDING_MESSAGES,
    ChunkOutcome,
    PeerHandler,
    PeerInbox,
    PeerMessage,
    Refusal,
)
from ._pins import PinnedPeers, check_presented, client_ssl_context, fetch_certificate, pinned_http, server_ssl_context
from ._wire import (
    CHANNEL_PATTERN,
    H_ATTEMPT,
    H_CHUNK,
    H_CHUNKS,
    H_DIGEST,
    H_KIND,
    H_RESP_CHUNKS,
    H_RESP_DIGEST,
    PEER_PREFIX,
    PeerError,
    PeerRefused,
    parse_attempt,
)

__all__ = [
    "CHANNEL_PATTERN",
    "DEFAULT_MAX_PENDING_BYTES",
    "DEFAULT_MAX_PENDING_MESSAGES",
    "H_ATTEMPT",
    "ChunkOutcome",
    "H_CHUNK",
    "H_CHUNKS",
    "H_DIGEST",
    "H_KIND",
    "H_RESP_CHUNKS",
    "H_RESP_DIGEST",
    "PEER_PREFIX",
    "PeerClient",
    "PeerError",
    "PeerHandler",
    "PeerInbox",
    "PeerMessage",
    "PeerRefused",
    "PinnedPeers",
    "Refusal",
    "check_presented",
    "client_ssl_context",
    "fetch_certificate",
    "parse_attempt",
    "pinned_http",
    "server_ssl_context",
]
