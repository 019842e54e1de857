"""A short-lived cache of API token hash -> user, so a node's poll does not re-read the users table.

Each request with a bearer token (or a browser session) needs its user; reading it through the ORM
cost about a third of a node poll's CPU. The cache keeps, per SHA-256 token hash, the user as last
read from the store, for at most ``ttl`` seconds. It is correct under revocation:

- ``revoke_user`` (API or CLI within this process) calls ``invalidate`` after its transaction has
  committed, so the very next request with the revoked token re-reads the store and is refused.
- A lookup that read the store while a revocation was running cannot put the pre-revocation user back:
  ``put`` is given the generation ``generation()`` returned before the read and is ignored if any
  ``invalidate`` happened since.
- Expiry is checked on every hit against the caller's clock, so a token never outlives ``expires_at``.
- A revocation made by another process on the same database (``tandem-coordinator revoke-user`` against
  a running server, or another worker of ``serve --workers N``) takes effect here within ``ttl`` seconds
  (default 2 s); the first read of the store that finds the token revoked also ``forget``s it for ``known``.

Separately, for the failed-authentication limit only (``access.known_caller``), it remembers for
``known_for`` seconds (default 300) which token hashes authenticated: a caller seen recently is
served without taking a token of its address's bucket while it waits. That memory never authorises
anything (every request still authenticates through ``get`` or the store, and a 401 is charged), it
forgets a user at their expiry, and ``invalidate`` clears it. With only the 2 s entries, every node
behind one address became unknown at once each 2 s, and a slow moment of the database left enough
such requests in flight to empty the bucket: 745 spurious 429s in 20 s of bench/api_bench.py on
PostgreSQL.

Only hashes of valid tokens are kept (unknown and expired tokens are never cached: each such attempt
reaches the store and the failed-authentication limit). What the cache holds is what the users table
holds; nothing derived from a token other than its hash is stored. Bounded to ``max_entries`` users.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from protocols.wire.control import UserPublic

__all__ = ["DEFAULT_TTL_SECONDS", "PrincipalCache"]

DEFAULT_TTL_SECONDS = 2.0
DEFAULT_KNOWN_SECONDS = 300.0
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class _Entry:
    user: UserPublic
    until: float


class PrincipalCache:
    """Token hash -> ``UserPublic`` for at most ``ttl`` seconds (monotonic ``clock``), thread-safe."""

    def __init__(self, ttl: float = DEFAULT_TTL_SECONDS, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic, known_for: float = DEFAULT_KNOWN_SECONDS) -> None:
        self.ttl, self.max_entries, self.clock, self.known_for = ttl, max_entries, clock, known_for
        self._entries: dict[str, _Entry] = {}
        self._seen: dict[str, _Entry] = {}  # hash -> (user, seen until): for ``known`` only
        self._generation = 0
        self._lock = threading.Lock()

    def generation(self) -> int:
        """Pass to ``put`` after reading the store: a revocation in between makes that ``put`` a no-op."""
        return self._generation

    def get(self, token_hash: str, now: datetime) -> UserPublic | None:
        """The cached user of ``token_hash`` if fresh and not expired at ``now``; else None (read the store)."""
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if entry.until <= self.clock() or (entry.user.expires_at is not None and entry.user.expires_at <= now):
            with self._lock:
                if self._entries.get(token_hash) is entry:
                    del self._entries[token_hash]
            return None
        return entry.user

    def put(self, token_hash: str, user: UserPublic, generation: int) -> None:
        """Remember ``user`` for ``token_hash`` unless an ``invalidate`` happened after ``generation``."""
        with self._lock:
            if generation != self._generation:
                return
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            if len(self._seen) >= self.max_entries:
                self._seen.clear()
            now = self.clock()
            self._entries[token_hash] = _Entry(user, now + self.ttl)
            self._seen[token_hash] = _Entry(user, now + self.known_for)

    def known(self, token_hash: str, now: datetime) -> bool:
        """Whether ``token_hash`` authenticated less than ``known_for`` seconds ago and is not expired at ``now``.

        For the failed-authentication limit only: it authorises nothing.
        """
        entry = self._seen.get(token_hash)
        return (entry is not None and entry.until > self.clock()
                and (entry.user.expires_at is None or entry.user.expires_at > now))

    def forget(self, token_hash: str) -> None:
        """Drop ``token_hash``: the store holds no valid user for it (revoked or expired, maybe by another process).

        It is then no longer ``known``: its next failures take tokens of the failed-authentication limit again.
        """
        with self._lock:
            self._entries.pop(token_hash, None)
            self._seen.pop(token_hash, None)

    def invalidate(self) -> None:
        """Forget every entry (a token was revoked); lookups in flight will not re-add theirs."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._seen.clear()
