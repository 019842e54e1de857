"""What both ends of the data plane agree on: the URL prefix, channel names, chunk headers and errors."""

from __future__ import annotations

import re

from protocols.wire.errors import ProtocolError

PEER_PREFIX = "/peer/v1"
CHANNEL_PATTERN = re.compile(r"^[a-z][a-z0-9_.\-]{0,62}$")
H_KIND, H_CHUNK, H_CHUNKS, H_DIGEST = "X-Tandem-Kind", "X-Tandem-Chunk", "X-Tandem-Chunks", "X-Tandem-Digest"
H_RESP_CHUNKS, H_RESP_DIGEST = "X-Tandem-Response-Chunks", "X-Tandem-Response-Digest"
H_ATTEMPT = "X-Tandem-Attempt"
"""The job attempt a frame belongs to (``PeerInbox.check_attempt`` refuses a stale attempt's frames).

Also on the node's Flower round endpoint: the ClientApp shim names the attempt of the round's run, and
:mod:`node.jobs.training.service` refuses a round of a stale attempt the same way (410)."""


def parse_attempt(raw: str | None) -> int | None:
    """The job attempt an ``X-Tandem-Attempt`` header value names, or None when there is no header.

    Raises:
        ProtocolError: (400) the value is not a positive decimal attempt number.
    """
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or int(raw) < 1:  # '²'.isdigit() is True
        raise ProtocolError(f"bad {H_ATTEMPT} header: a positive attempt number is expected")
    return int(raw)


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
