"""Browser sessions for the compliance pages: log in with an API token, get an opaque cookie.

A person pastes their API token into the login form (``POST /login``, never a URL). If it belongs to a
role that may view the audit pages, the coordinator opens a server-side session and sets the cookie
``tandem_session`` (``HttpOnly``, ``SameSite=Strict``, ``Path=/``; ``Secure`` when served over HTTPS) to
a fresh random id. Sessions live in the coordinator's database (the store's ``sessions``, table
``web_session``), so every worker process sharing it sees the same sessions (a login served by one
worker is known to the others, and a logout through any of them ends the session everywhere), and they
survive a restart. The database keeps only the id's SHA-256, the token's hash, the user name and two
times, so:

- the cookie value is never stored: whoever reads the table learns who is signed in, not a usable session;
- the token itself is neither stored nor sent again;
- every request re-reads the session and the user by token hash, so an expired token or a removed user
  ends the session, as does a logout through another process;
- sessions end after ``IDLE`` without use or ``ABSOLUTE`` after login, and at logout; at most
  ``MAX_SESSIONS`` are kept (a login beyond that ends the least recently used).

Every refused login is audited as ``auth.failed`` with ``channel: web`` and the client's address
(unknown and expired tokens by ``accounts.authenticate``; empty tokens and roles that may not view the
pages here), through the app's ``AuthFailureLog``, which chains repeats of one kind from one address
once per window with a count; logins and logouts are audited as ``web.login`` / ``web.logout``, in the
transaction that opens or closes the session.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Cookie, Request
from starlette.concurrency import run_in_threadpool

from coordinator.accounts import EXPIRED, Principal, authenticate, hash_token, lookup_user, refuse
from coordinator.api.deps import ContextDep
from coordinator.api.middleware import AUTHENTICATED_KEY
from coordinator.audit import log as audit_log
from coordinator.audit.log import AuthFailureLog
from coordinator.context import Context
from coordinator.errors import Forbidden, Unauthorized
from coordinator.store import Store, Transaction, WebSession
from protocols.wire.control import UserPublic

__all__ = ["ABSOLUTE", "COOKIE", "IDLE", "SEEN_STEP", "LoginAttempt", "WebSessions", "get_sessions", "login",
           "logout", "session_principal"]

COOKIE = "tandem_session"
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=8)
SEEN_STEP = timedelta(seconds=60)
"""A page view records its time only when the stored one is older than this (see ``WebSessions.resolve``)."""
MAX_SESSIONS = 10_000
KNOWN_SECONDS = 300.0
"""How long this process remembers a session it resolved, for the failed-authentication limit only."""
SIGN_IN = "sign in with your API token to view the audit pages"


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def _stale(session: WebSession, now: datetime) -> bool:
    return now - session.seen >= IDLE or now - session.started >= ABSOLUTE


class WebSessions:
    """The sessions in the store, keyed by the SHA-256 of their cookie value. Thread-safe.

    Reads go through ``store.read()``, writes through ``store.write()`` (or the caller's transaction, so a
    login or logout and its audit event commit together). Besides the store, the object remembers which
    sessions this process resolved in the last ``KNOWN_SECONDS`` (``known``): a hint for the
    failed-authentication limit that never admits anyone.
    """

    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._clock = clock
        self._known: dict[str, tuple[str, float]] = {}  # key -> (token hash, remembered until)
        self._lock = threading.Lock()

    def open(self, token_hash: str, user: str, now: datetime, tx: Transaction | None = None) -> str:
        """Start a session (in ``tx`` if given) and return its id (the cookie value, 256 random bits).

        Stale sessions are removed first, and the least recently used ones beyond ``MAX_SESSIONS - 1``.
        """
        session_id = secrets.token_urlsafe(32)
        with nullcontext(tx) if tx is not None else self.store.write() as t:
            t.sessions.prune(seen_by=now - IDLE, started_by=now - ABSOLUTE, keep=MAX_SESSIONS - 1)
            t.sessions.insert(WebSession(key=_key(session_id), token_hash=token_hash, user=user, started=now,
                                         seen=now))
        return session_id

    def resolve(self, session_id: str, now: datetime) -> WebSession | None:
        """The live session ``session_id`` names (refreshing its idle timer), or None.

        A stale session is removed. The use is written only when the stored one is ``SEEN_STEP`` (60 s)
        old or more, so most page views only read the store: a session may then end up to 60 s before
        ``IDLE`` (30 min) after its last use, which nobody notices.
        """
        key = _key(session_id)
        with self.store.read() as tx:
            session = tx.sessions.get(key)
        if session is None or _stale(session, now):
            self._forget(key)
            if session is not None:
                with self.store.write() as tx:
                    tx.sessions.delete(key)
            return None
        if now - session.seen >= SEEN_STEP:
            with self.store.write() as tx:
                tx.sessions.set_seen(key, now)
            session = session.model_copy(update={"seen": now})
        self._remember(key, session.token_hash)
        return session

    def close(self, session_id: str, tx: Transaction | None = None) -> WebSession | None:
        """End a session (in ``tx`` if given); returns it if it was open."""
        key = _key(session_id)
        self._forget(key)
        with nullcontext(tx) if tx is not None else self.store.write() as t:
            return t.sessions.delete(key)

    def known(self, session_id: str) -> str | None:
        """The token hash of a session this process resolved in the last ``KNOWN_SECONDS``, without the store.

        For the failed-authentication limit only (``access.known_caller``): it never admits a request
        (``session_principal`` resolves every one through the store), and may name a session that another
        process closed since.
        """
        entry = self._known.get(_key(session_id))
        return entry[0] if entry is not None and entry[1] > self._clock() else None

    def _remember(self, key: str, token_hash: str) -> None:
        now = self._clock()
        with self._lock:
            if key not in self._known and len(self._known) >= MAX_SESSIONS:
                self._known = {k: e for k, e in self._known.items() if e[1] > now}
                if len(self._known) >= MAX_SESSIONS:
                    del self._known[next(iter(self._known))]
            self._known[key] = (token_hash, now + KNOWN_SECONDS)

    def _forget(self, key: str) -> None:
        with self._lock:
            self._known.pop(key, None)


def get_sessions(request: Request) -> WebSessions:
    """The app's session registry (created by ``coordinator.api.routes.audit_pages.install``)."""
    sessions: WebSessions = request.app.state.web_sessions
    return sessions


async def session_principal(
    request: Request, ctx: ContextDep, tandem_session: Annotated[str | None, Cookie()] = None
) -> Principal:
    """The user of the browser session, re-read on every request.

    The session is read from the store every time (a logout through another worker process ends it at
    once), and its user through ``accounts.lookup_user``: a token read from the store in the last seconds
    is not read again; a revocation through this coordinator clears that.

    Raises:
        Unauthorized: no cookie, an unknown or stale session, or a token that has expired or vanished.
    """
    if not tandem_session:
        raise Unauthorized(SIGN_IN)
    user = await run_in_threadpool(_session_user, ctx, get_sessions(request), tandem_session, ctx.clock())
    mark_authenticated(request)
    return Principal.of(user)


def _session_user(ctx: Context, sessions: WebSessions, session_id: str, now: datetime) -> UserPublic:
    """The live user of session ``session_id`` (one thread-pool hop for the session and its user).

    Raises:
        Unauthorized: an unknown or stale session, or a token that has expired or vanished (which also
            ends the session).
    """
    session = sessions.resolve(session_id, now)
    if session is None:
        raise Unauthorized(SIGN_IN)
    user = lookup_user(ctx, session.token_hash)
    if user is None or (user.expires_at is not None and user.expires_at <= now):
        sessions.close(session_id)
        raise Unauthorized(EXPIRED if user else SIGN_IN)
    return user


def mark_authenticated(request: Request) -> None:
    """Tell the failed-authentication limit (``middleware.ClientRateLimit``) this request authenticated."""
    done = request.scope.get(AUTHENTICATED_KEY)
    if done is not None:
        done()


@dataclass(frozen=True)
class LoginAttempt:
    """Where a login comes from: the client's address and the app's failure log (None: chain every failure)."""

    client: str = "unknown"
    failures: AuthFailureLog | None = None

    def refuse(self, ctx: Context, reason: str, user: str | None = None) -> None:
        """Audit a refused login."""
        details = {"channel": "web", "reason": reason, **({"user": user} if user else {})}
        refuse(ctx, self.failures, self.client, details)


def login(ctx: Context, sessions: WebSessions, token: str, bootstrap: str | None,
          allowed: tuple[str, ...], attempt: LoginAttempt = LoginAttempt()) -> tuple[Principal, str]:  # noqa: B008
    """Check a token pasted into the login form and open a session for it.

    Args:
        ctx: service context.
        sessions: the app's session registry.
        token: what was pasted (surrounding whitespace is ignored).
        bootstrap: the configured bootstrap token; it never opens a session.
        allowed: roles that may view the pages.
        attempt: the client's address and the failure log refusals are audited through.

    Returns:
        The principal and the new session id (to set as the cookie).

    Raises:
        Unauthorized: empty, unknown or expired token (audited).
        Forbidden: a valid token of a role that may not view the pages, or the bootstrap token (audited).
    """
    token = token.strip()
    if not token:
        attempt.refuse(ctx, "empty token")
        raise Unauthorized("paste your API token", field="form.token")
    principal = authenticate(ctx, token, bootstrap, channel="web", client=attempt.client, failures=attempt.failures)
    if principal.label not in allowed:
        attempt.refuse(ctx, f"role {principal.label} may not view the audit pages", principal.name)
        raise Forbidden(f"role {principal.label!r} may not view the audit pages (allowed: {', '.join(allowed)})",
                        field="form.token", fix="sign in with an auditor's token")
    with ctx.store.write() as tx:
        session_id = sessions.open(hash_token(token), principal.name, ctx.clock(), tx)
        audit_log.record(ctx, tx, principal.actor, "web.login", "session", {"channel": "web"})
    return principal, session_id


def logout(ctx: Context, sessions: WebSessions, session_id: str | None) -> None:
    """End the session (if any) and audit it, in one transaction."""
    if not session_id:
        return
    with ctx.store.write() as tx:
        session = sessions.close(session_id, tx)
        if session is not None:
            audit_log.record(ctx, tx, f"user:{session.user}", "web.logout", "session", {"channel": "web"})
