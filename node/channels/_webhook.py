"""A generic HTTPS webhook channel (push, in-app, internet-ad gateways): one signed POST per message.

Body: canonical JSON ``{"message_id", "recipient", "text"}``. Headers: ``Idempotency-Key`` (the
message id, stable across retries, so the receiver can drop a repeat), ``X-Tandem-Timestamp`` (Unix
seconds) and ``X-Tandem-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``. The
receiver verifies the signature with :func:`verify_signature` (or its own copy of it) and should refuse
a stale timestamp. Transport errors, 429 and 5xx are retried with back-off under the same key; 401/403
mean the secret is wrong (the channel counts as down, naming the secret setting); another 4xx refuses
that one message. A 2xx body may carry ``{"id": ...}``, the endpoint's id of the message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable

import httpx

from ._core import ChannelDownError, OutboundMessage, Receipt, SubmitResult

__all__ = ["WebhookChannel", "sign", "verify_signature"]

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Tandem-Signature"
TIMESTAMP_HEADER = "X-Tandem-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value of ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, timestamp: str, body: bytes, header: str) -> bool:
    """Whether ``header`` is the signature of ``body`` at ``timestamp`` (constant-time compare)."""
    return hmac.compare_digest(sign(secret, timestamp, body), header)


class WebhookChannel:
    """A :class:`~node.channels.Channel` that POSTs each message to ``url``.

    Args:
        url: The endpoint (``TANDEM_CHANNEL_WEBHOOK_URL``).
        secret: The HMAC secret shared with the endpoint (from ``TANDEM_CHANNEL_WEBHOOK_SECRET_FILE``).
        retries: Attempts per message.
        backoff_s: First delay between attempts (doubled each time).
        now: Unix time, for the timestamp header.
        sleep: How to wait between attempts.
        client: An ``httpx.Client`` (tests inject a transport); one with ``verify``/``timeout`` otherwise.
    """

    kind = "webhook"
    setting = "TANDEM_CHANNEL_WEBHOOK_URL"
    resend_safe = True

    def __init__(self, *, url: str, secret: str, retries: int = 3, backoff_s: float = 0.5,
                 now: Callable[[], float], sleep: Callable[[float], None], client: httpx.Client) -> None:
        self._url, self._secret, self._retries, self._backoff = url, secret.encode(), retries, backoff_s
        self._now, self._sleep, self._client = now, sleep, client

    def submit(self, message: OutboundMessage) -> SubmitResult:
        """POST the message, retrying transport errors, 429 and 5xx with the same idempotency key."""
        body = json.dumps({"message_id": message.message_id, "recipient": message.recipient, "text": message.text},
                          ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
        delay, last = self._backoff, ""
        for attempt in range(self._retries):
            if attempt:
                self._sleep(delay)
                delay *= 2
            stamp = str(int(self._now()))
            headers = {"Content-Type": "application/json", "Idempotency-Key": message.message_id,
                       TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(self._secret, stamp, body)}
            try:
                resp = self._client.post(self._url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                last = type(exc).__name__
                continue
            if resp.status_code in (401, 403):
                raise ChannelDownError(f"the webhook refused our signature (HTTP {resp.status_code})",
                                       setting="TANDEM_CHANNEL_WEBHOOK_SECRET_FILE", handed_over=True)
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                continue
            if resp.status_code >= 400:
                return SubmitResult(message.message_id, (), error=f"HTTP {resp.status_code}")
            return SubmitResult(message.message_id, (self._remote_id(resp, message.message_id),))
        raise ChannelDownError(f"webhook {self._url} failed {self._retries} times ({last})", setting=self.setting,
                               handed_over=True)

    @staticmethod
    def _remote_id(resp: httpx.Response, default: str) -> str:
        try:
            found = resp.json().get("id")
        except (ValueError, AttributeError):
            return default
        return str(found) if found else default

    def receipts(self, wait_s: float) -> list[Receipt]:
        """A webhook acknowledges synchronously; it sends no later receipts."""
        return []

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
