"""ASGI middleware: refuse clients that keep failing authentication (429), and oversized bodies (413).

Both answer before anything parses the request, touches the database or writes the audit log.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AUTHENTICATED_KEY", "BodySizeLimit", "ClientRateLimit"]

MAX_TRACKED_CLIENTS = 50_000
AUTHENTICATED_KEY = "tandem.authenticated"
"""ASGI scope key: a callable the app calls once it has authenticated the caller (``ClientRateLimit``)."""


async def _send_json(send: Send, status: int, detail: dict[str, str], headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps({"detail": [detail]}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})


@dataclass
class _Bucket:
    tokens: float
    at: float


class ClientRateLimit:
    """A token bucket per client address, spent by failed authentications (responses with status 401).

    Each address may fail ``burst`` times at once and once more every ``refill_seconds``. A request is
    admitted only if its address's bucket holds a whole token; the token is taken while the request is
    not yet known to be authenticated and given back unless the answer is 401, so concurrent requests
    cannot overshoot the limit. The token is given back as soon as the app has authenticated the caller
    (the app calls ``scope[AUTHENTICATED_KEY]()``): otherwise many slow requests of valid callers behind
    one address (a proxy, a busy load test) would hold the bucket empty and be refused with 429 for
    failures nobody made. A 401 sent after that still spends a token. A request whose credential the
    app already knows to be valid (``trusted(scope)``, e.g. ``access.known_caller``: a token it
    authenticated in the last seconds) is admitted without a token even when the bucket is empty, so a
    burst of many such requests arriving at once is served; a 401 it gets all the same is charged. An
    address with an empty bucket gets 429 with ``Retry-After`` for every request (it cannot be known
    whether its next token is valid without the database work this limit saves), until a token has
    refilled. Authenticated callers are not slowed: their token identifies them and can be revoked.

    The address is the TCP peer's (ASGI ``client``): behind a reverse proxy every client shares the
    proxy's address, so run the limit at the proxy too.
    """

    def __init__(self, app: ASGIApp, burst: int, refill_seconds: float,
                 clock: Callable[[], float] = time.monotonic, trusted: Callable[[Scope], bool] | None = None) -> None:
        self.app = app
        self.burst, self.refill_seconds, self.clock = burst, refill_seconds, clock
        self.trusted = trusted
        self._buckets: dict[str, _Bucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        if self.trusted is not None and self.trusted(scope):
            await self._trusted(client, scope, receive, send)
            return
        bucket = self._take(client)
        if bucket is None:
            await self._refuse(send, client)
            return
        refused = returned = False

        def give_back() -> None:
            nonlocal returned
            if not returned:
                returned = True
                bucket.tokens = min(float(self.burst), bucket.tokens + 1)

        async def watch(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] == 401:
                refused = True
            await send(message)

        scope[AUTHENTICATED_KEY] = give_back
        try:
            await self.app(scope, receive, watch)
        finally:
            if not refused:
                give_back()
            elif returned:  # authenticated, then refused after all: the failure still counts
                bucket.tokens -= 1

    async def _trusted(self, client: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request with a known credential without a token; charge its bucket if it gets 401."""
        refused = False

        async def watch(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] == 401:
                refused = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if refused:
                self._charge(client)

    def _charge(self, client: str) -> None:
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            self._forget_full(now)
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
        refilled = min(float(self.burst), bucket.tokens + (now - bucket.at) / self.refill_seconds)
        bucket.tokens = max(0.0, refilled - 1)  # charges past empty would lock the address out for hours
        bucket.at = now

    def _take(self, client: str) -> _Bucket | None:
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            self._forget_full(now)
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) / self.refill_seconds)
        bucket.at = now
        if bucket.tokens < 1:
            return None
        bucket.tokens -= 1
        return bucket

    def _forget_full(self, now: float) -> None:
        """Bound memory: past ``MAX_TRACKED_CLIENTS`` addresses, drop those whose bucket has refilled."""
        if len(self._buckets) < MAX_TRACKED_CLIENTS:
            return
        horizon = self.burst * self.refill_seconds
        for key in [k for k, b in self._buckets.items() if now - b.at >= horizon]:
            del self._buckets[key]
        if len(self._buckets) >= MAX_TRACKED_CLIENTS:  # all recently active: forget the longest idle
            del self._buckets[min(self._buckets, key=lambda k: self._buckets[k].at)]

    def retry_after(self, client: str) -> int:
        """Whole seconds until ``client`` may try again (0 if it may now)."""
        bucket = self._buckets.get(client)
        if bucket is None:
            return 0
        tokens = min(float(self.burst), bucket.tokens + (self.clock() - bucket.at) / self.refill_seconds)
        return max(0, math.ceil((1 - tokens) * self.refill_seconds))

    async def _refuse(self, send: Send, client: str) -> None:
        wait = max(1, self.retry_after(client))
        detail = {"field": "header.authorization",
                  "message": f"too many failed authentications from {client}: requests from this address are "
                             f"refused for {wait} s",
                  "fix": f"wait {wait} s (Retry-After), then send a valid API token; ask your admin for one if "
                         "yours was revoked or has expired"}
        await _send_json(send, 429, detail, [(b"retry-after", str(wait).encode())])


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """Reject bodies larger than ``max_bytes``: at once by ``Content-Length``, else while reading.

    The body is read in full (at most ``max_bytes``) before the app sees it, so a request that turns
    out too large is refused before any parsing or database work.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._declared_too_large(scope):
            await self._refuse(send)
            return
        try:
            body = await self._read(receive)
        except _TooLarge:
            await self._refuse(send)
            return
        await self.app(scope, self._replay(body, receive), send)

    def _declared_too_large(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value) > self.max_bytes
                except ValueError:
                    return True
        return False

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    def _replay(body: bytes, receive: Receive) -> Receive:
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    async def _refuse(self, send: Send) -> None:
        detail = {"field": "body", "message": f"request body exceeds {self.max_bytes} bytes",
                  "fix": "send a smaller body"}
        await _send_json(send, 413, detail, [])
