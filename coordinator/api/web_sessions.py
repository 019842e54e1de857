"""Browser sessions for the compliance pages: log in with an API token, get an opaque cookie.

A person pastes their API token into the login form (``POST /login``, never a URL). If it belongs to a
role that may view the audit pages, the coordinator opens a server-side session and sets the cookie
``tandem_session`` (``HttpOnly``, ``SameSite=Strict``, ``Path=/``; ``Secure`` when served over HTTPS) to
a fresh random id. The server keeps only the id's SHA-256, the token's hash and the user name, so:

- the token itself is neither stored nor sent again;
- every request re-reads the user by token hash, so an expired token or a removed user ends the session;
- sessions end after ``IDLE`` without use or ``ABSOLUTE`` after login, at logout, and at restart
  (they live in process memory; one coordinator process serves the pages).

Every refused login is audited as ``auth.failed`` with ``channel: web`` and the client's address
(unknown and expired tokens by ``accounts.authenticate``; empty tokens and roles that may not view the
pages here), through the app's ``AuthFailureLog``, which chains repeats of one kind from one address
once per window with a count; logins and logouts are audited as ``web.login`` / ``web.logout``.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
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

__all__ = ["ABSOLUTE", "COOKIE", "IDLE", "LoginAttempt", "WebSessions", "get_sessions", "login", "logout",
           "session_principal"]

COOKIE = "tandem_session"
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=8)
MAX_SESSIONS = 10_000
SIGN_IN = "sign in with your API token to view the audit pages"


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


@dataclass
class _Session:
    token_hash: str
    user: str
    started: datetime
    seen: datetime


class WebSessions:
    """Open sessions, keyed by the SHA-256 of their cookie value. Thread-safe."""

    def __init__(self) -> None:
        self._open: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def open(self, token_hash: str, user: str, now: datetime) -> str:
        """Start a session and return its id (the cookie value, 256 random bits)."""
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._drop_stale(now)
            if len(self._open) >= MAX_SESSIONS:
                self._open.pop(min(self._open, key=lambda k: self._open[k].seen))
            self._open[_key(session_id)] = _Session(token_hash, user, now, now)
        return session_id

    def resolve(self, session_id: str, now: datetime) -> _Session | None:
        """The live session ``session_id`` names (refreshing its idle timer), or None."""
        with self._lock:
            session = self._open.get(_key(session_id))
            if session is None or self._stale(session, now):
                self._open.pop(_key(session_id), None)
                return None
            session.seen = now
            return session

    def close(self, session_id: str) -> _Session | None:
        """End a session; returns it if it was open."""
        with self._lock:
            return self._open.pop(_key(session_id), None)

    @staticmethod
    def _stale(session: _Session, now: datetime) -> bool:
        return now - session.seen >= IDLE or now - session.started >= ABSOLUTE

    def _drop_stale(self, now: datetime) -> None:
        for key in [k for k, s in self._open.items() if self._stale(s, now)]:
            del self._open[key]


def get_sessions(request: Request) -> WebSessions:
    """The app's session registry (created by ``coordinator.api.routes.audit_pages.install``)."""
    sessions: WebSessions = request.app.state.web_sessions
    return sessions


async def session_principal(
    request: Request, ctx: ContextDep, tandem_session: Annotated[str | None, Cookie()] = None
) -> Principal:
    """The user of the browser session, re-read on every request.

    Through ``accounts.lookup_user``: a token read from the store in the last seconds is not read again;
    a revocation through this coordinator clears that.

    Raises:
        Unauthorized: no cookie, an unknown or stale session, or a token that has expired or vanished.
    """
    now = ctx.clock()
    session = get_sessions(request).resolve(tandem_session, now) if tandem_session else None
    if session is None:
        raise Unauthorized(SIGN_IN)
    user = ctx.principals.get(session.token_hash, now)  # async: a cached user needs no thread-pool hop
    if user is None:
        user = await run_in_threadpool(lookup_user, ctx, session.token_hash)
    if user is None or (user.expires_at is not None and user.expires_at <= now):
        get_sessions(request).close(tandem_session or "")
        raise Unauthorized(EXPIRED if user else SIGN_IN)
    mark_authenticated(request)
    return Principal.of(user)


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
    session_id = sessions.open(hash_token(token), principal.name, ctx.clock())
    audit_log.record_alone(ctx, principal.actor, "web.login", "session", {"channel": "web"})
    return principal, session_id


def logout(ctx: Context, sessions: WebSessions, session_id: str | None) -> None:
    """End the session (if any) and audit it."""
    session = sessions.close(session_id) if session_id else None
    if session is not None:
        audit_log.record_alone(ctx, f"user:{session.user}", "web.logout", "session", {"channel": "web"})
