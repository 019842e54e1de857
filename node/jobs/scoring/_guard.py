"""The gate in front of the bank's scoring API: lockout, rate limit, API key and a bounded body.

:class:`ApiGuard` is an ASGI middleware that decides before the app (and before any byte of the body
is read) whether a request may proceed, per client address (``scope["client"]``; behind a reverse
proxy every client shares the proxy's address, so put the limits in the proxy too):

1. a locked-out address gets 429 with ``Retry-After`` — even with the right key;
2. more than ``api_requests_per_minute`` requests in the current minute: 429 with ``Retry-After``;
3. a missing or wrong bearer key: 401, counted; the ``api_max_failed_keys``-th within
   ``api_failed_key_window_s`` seconds locks the address out for ``api_lockout_s`` seconds;
4. a ``Content-Length`` above ``api_max_body_bytes``: 413 at once, the body unread; a body without
   one (chunked) is read up to the limit and refused with 413 as soon as it passes it.

The app then gets the body already read (at most the limit). The guard keeps per-address counters
in memory only (a restart forgets lockouts) and forgets idle addresses.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from node.jobs.scoring._limits import ENV_PREFIX, ScoringLimits

__all__ = ["ApiGuard"]

logger = logging.getLogger(__name__)

_MINUTE = 60.0
_MAX_TRACKED = 10_000


@dataclass
class _Client:
    window_start: float
    requests: int = 0
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


@dataclass(frozen=True)
class _Refusal:
    status: int
    detail: str
    retry_after: float | None = None


class ApiGuard:
    """ASGI middleware guarding ``app`` (see the module docstring).

    Args:
        app: the scoring app.
        api_key: the bearer key clients must present.
        limits: rate limit, lockout and body bound (``api_*``).
        clock: monotonic seconds (tests pass their own to move time).
    """

    def __init__(self, app: ASGIApp, api_key: SecretStr, limits: ScoringLimits, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.limits, self._clock = app, limits, clock
        self._expected = api_key.get_secret_value().encode()
        self._clients: dict[str, _Client] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        client = (scope.get("client") or ("unknown", 0))[0]
        refusal = self._admit(str(client), headers.get("authorization")) or _declared_size(headers, self.limits)
        body = b""
        if refusal is None:
            body, refusal = await _read_body(receive, self.limits.api_max_body_bytes)
        if refusal is not None:
            await _respond(send, refusal)
            return
        await self.app(scope, _replay(body, receive), send)

    def _admit(self, client: str, authorization: str | None) -> _Refusal | None:
        """Lockout, rate limit and key check of one request from ``client``; ``None`` lets it through."""
        now = self._clock()
        with self._lock:
            state = self._state(client, now)
            if state.locked_until > now:
                return _Refusal(429, f"too many wrong API keys from this address; locked out for "
                                     f"{self.limits.api_lockout_s:g} s", state.locked_until - now)
            if now - state.window_start >= _MINUTE:
                state.window_start, state.requests = now, 0
            state.requests += 1
            if state.requests > self.limits.api_requests_per_minute:
                return _Refusal(429, f"more than {self.limits.api_requests_per_minute} requests per minute from "
                                     f"this address ({ENV_PREFIX}API_REQUESTS_PER_MINUTE)",
                                state.window_start + _MINUTE - now)
            if _bearer_ok(authorization, self._expected):
                return None
            self._failed(client, state, now)
            return _Refusal(401, "missing or wrong API key (Authorization: Bearer <key>)")

    def _failed(self, client: str, state: _Client, now: float) -> None:
        state.failures.append(now)
        while state.failures and state.failures[0] <= now - self.limits.api_failed_key_window_s:
            state.failures.popleft()
        if len(state.failures) >= self.limits.api_max_failed_keys:
            state.locked_until, state.failures = now + self.limits.api_lockout_s, deque()
            logger.warning("scoring API: %s locked out for %g s after %d wrong API keys", client,
                           self.limits.api_lockout_s, self.limits.api_max_failed_keys)

    def _state(self, client: str, now: float) -> _Client:
        if client not in self._clients and len(self._clients) >= _MAX_TRACKED:
            horizon = max(_MINUTE, self.limits.api_failed_key_window_s)
            self._clients = {c: s for c, s in self._clients.items()
                             if s.locked_until > now or now - s.window_start < horizon}
        return self._clients.setdefault(client, _Client(window_start=now))


def _bearer_ok(authorization: str | None, expected: bytes) -> bool:
    scheme, _, token = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)


def _too_large(limit: int) -> _Refusal:
    return _Refusal(413, f"request body larger than {limit} bytes ({ENV_PREFIX}API_MAX_BODY_BYTES); "
                         "send one customer per request")


def _declared_size(headers: dict[str, str], limits: ScoringLimits) -> _Refusal | None:
    declared = headers.get("content-length")
    if declared is None:
        return None
    if not declared.strip().isdigit():
        return _Refusal(400, "Content-Length must be a non-negative integer")
    return _too_large(limits.api_max_body_bytes) if int(declared) > limits.api_max_body_bytes else None


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, _Refusal | None]:
    """Read the body, refusing (and stopping) as soon as it passes ``limit`` bytes."""
    buf = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", _Refusal(400, "client disconnected before the body ended")
        buf += message.get("body", b"")
        if len(buf) > limit:
            return b"", _too_large(limit)
        if not message.get("more_body", False):
            return bytes(buf), None


def _replay(body: bytes, upstream: Receive) -> Receive:
    """The body already read, then the connection's own messages (its disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await upstream()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _respond(send: Send, refusal: _Refusal) -> None:
    body = json.dumps({"detail": refusal.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if refusal.retry_after is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(refusal.retry_after))).encode()))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
