"""Users, API tokens and the authenticated ``Principal``.

API tokens are 32 random bytes (URL-safe base64), shown once at creation; only their SHA-256 is
stored. Every token expires (``UserCreate.expires_in_days``, default 90); an expired token is refused
like an unknown one but with a message saying what to do. ``revoke_user`` ends a token at once (its
expiry becomes now), for an admin of the user's party, an auditor, or the CLI. The bootstrap token from
settings may create users and nothing else. Failed logins are audited with the client's address and the
reason, never anything derived from the presented token (``coordinator.audit.log.AuthFailureLog``
aggregates repeats).

An ``operator`` runs its party's node (bank or telco): the access table lets it fetch its party's
approved jobs, report progress and results, and read the catalog entries a node needs, nothing else (no
users, approvals, submissions or audit). A node should run with an operator token, not an admin's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coordinator.audit import log as audit_log
from coordinator.context import Context
from coordinator.errors import BadRequest, Forbidden, NotFound, Unauthorized
from protocols.wire.control import Role, UserCreate, UserCreated, UserPublic

__all__ = ["BOOTSTRAP", "EXPIRED", "Principal", "authenticate", "create_user", "hash_token", "lookup_user",
           "new_token", "refuse", "revoke_user"]

BOOTSTRAP = "bootstrap"
EXPIRED = "token expired: ask your admin for a new one"
PARTY_ROLES = frozenset({Role.ADMIN, Role.ANALYST, Role.OPERATOR})
ADMIN_MAY_CREATE = frozenset({Role.ANALYST, Role.OPERATOR})


@dataclass(frozen=True)
class Principal:
    """Whoever is calling: a user, or the bootstrap token (``role is None``)."""

    name: str
    role: Role | None
    party: str | None = None
    signing_key: str | None = None

    @property
    def label(self) -> str:
        """The role name used by the access table (``bootstrap`` for the bootstrap token)."""
        return self.role.value if self.role else BOOTSTRAP

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"user:{self.name}" if self.role else BOOTSTRAP

    @classmethod
    def of(cls, user: UserPublic) -> Principal:
        """The principal of a stored user."""
        return cls(user.name, user.role, user.party, user.signing_key)


def new_token() -> str:
    """A fresh API token: 32 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the store keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def refuse(ctx: Context, failures: audit_log.AuthFailureLog | None, client: str, details: Mapping[str, Any]) -> None:
    """Audit one failed authentication (through ``failures`` if given, which aggregates repeats)."""
    if failures is None:
        audit_log.record_alone(ctx, "anonymous", "auth.failed", "auth", {**details, "client": client})
    else:
        failures.record(ctx, client, details)


def lookup_user(ctx: Context, token_hash: str) -> UserPublic | None:
    """The user whose token hashes to ``token_hash``: from ``ctx.principals`` if fresh, else the store.

    An expired user is returned (the caller refuses it with the reason); only unexpired ones are cached.
    """
    user = ctx.principals.get(token_hash, ctx.clock())
    if user is not None:
        return user
    generation = ctx.principals.generation()
    with ctx.store.read() as tx:
        user = tx.catalog.user_by_token_hash(token_hash)
    if user is not None and (user.expires_at is None or user.expires_at > ctx.clock()):
        ctx.principals.put(token_hash, user, generation)
    else:  # revoked or expired (maybe through another process): no longer a known caller (``access.known_caller``)
        ctx.principals.forget(token_hash)
    return user


def authenticate(ctx: Context, token: str | None, bootstrap_token: str | None, *, channel: str = "api",
                 client: str = "unknown", failures: audit_log.AuthFailureLog | None = None) -> Principal:
    """Resolve a bearer token to a principal.

    Args:
        ctx: service context (its clock decides expiry).
        token: the presented token, if any. Nothing derived from it is recorded.
        bootstrap_token: the configured bootstrap token, if any.
        channel: recorded in ``auth.failed`` events: ``api`` (bearer header) or ``web`` (login form).
        client: the caller's address, recorded in ``auth.failed`` events.
        failures: the app's failure log (aggregates repeats); None records every failure.

    Raises:
        Unauthorized: no token, one that matches no user, or an expired (or revoked) one (the last two are
            audited as ``auth.failed``).
    """
    if not token:
        raise Unauthorized("missing bearer token", fix="send 'Authorization: Bearer <API token>'")
    if bootstrap_token and hmac.compare_digest(token.encode(), bootstrap_token.encode()):
        return Principal(BOOTSTRAP, None)
    user = lookup_user(ctx, hash_token(token))
    if user is None:
        refuse(ctx, failures, client, {"channel": channel, "reason": "unknown token"})
        raise Unauthorized("invalid API token", fix="use the token printed when your user was created")
    if user.expires_at is not None and user.expires_at <= ctx.clock():
        refuse(ctx, failures, client, {"channel": channel, "reason": "token expired", "user": user.name})
        raise Unauthorized(EXPIRED, fix="an admin creates a new user (tokens are not renewed in place)")
    return Principal.of(user)


def _check_shape(body: UserCreate) -> None:
    if body.role in PARTY_ROLES and body.party is None:
        raise BadRequest(f"a {body.role} must belong to a party", field="body.party", fix="set party")
    if body.role == Role.AUDITOR and body.party is not None:
        raise BadRequest("an auditor belongs to no party", field="body.party", fix="omit party")
    if body.signing_key is not None and body.role != Role.AUDITOR:
        raise BadRequest("only auditors register a personal signing key; party admins sign with the party's key",
                         field="body.signing_key", fix="omit signing_key, or register it on the party")


def _check_creator(actor: Principal, body: UserCreate) -> None:
    if actor.role is None:
        return
    if actor.role != Role.ADMIN or body.role not in ADMIN_MAY_CREATE:
        raise Forbidden("an admin may create only analysts and operators", field="body.role")
    if body.party != actor.party:
        raise Forbidden(f"an admin may create users only for their own party {actor.party!r}", field="body.party")


def create_user(ctx: Context, actor: str | Principal, body: UserCreate) -> UserCreated:
    """Create a user and return it with its token (shown once).

    Args:
        ctx: service context.
        actor: the calling principal, or a plain actor name (``cli``) for trusted local tooling.
        body: the user to create.

    Raises:
        BadRequest: party/role/signing key do not fit together.
        Forbidden: an admin creating an admin/auditor or a user of another party.
        Conflict: the name is taken.
    """
    _check_shape(body)
    if isinstance(actor, Principal):
        _check_creator(actor, body)
    token = new_token()
    with ctx.store.write() as tx:
        user = tx.catalog.create_user(body, hash_token(token), ctx.clock())
        audit_log.record(ctx, tx, actor.actor if isinstance(actor, Principal) else actor, "user.created",
                         f"user:{user.name}", {"role": user.role.value, "party": user.party})
    return UserCreated(**user.model_dump(), token=token)


def _check_revoker(actor: Principal, user: UserPublic) -> None:
    if actor.role == Role.AUDITOR or (actor.role == Role.ADMIN and user.party == actor.party):
        return
    if actor.role == Role.ADMIN:
        raise Forbidden(f"an admin may revoke only users of their own party {actor.party!r}", field="path.name")
    raise Forbidden(f"role {actor.label!r} may not revoke tokens", fix="ask an admin of the user's party or an auditor")


def revoke_user(ctx: Context, actor: str | Principal, name: str) -> UserPublic:
    """End user ``name``'s API token now: its expiry becomes the current time (audited ``user.revoked``).

    The user keeps its name and history; whoever needs access again gets a new user and token. Browser
    sessions opened with the token end at their next request.

    Args:
        ctx: service context.
        actor: an admin (users of its own party only) or an auditor (any user), or a plain actor name
            (``cli``) for trusted local tooling.
        name: the user whose token to revoke.

    Raises:
        NotFound: no such user.
        Forbidden: the caller may not revoke this user.
    """
    now = ctx.clock()
    with ctx.store.write() as tx:
        try:
            user = tx.catalog.get_user(name)
        except NotFound:
            raise NotFound(f"user {name!r} does not exist", field="path.name",
                           fix="name the user as it was created") from None
        if isinstance(actor, Principal):
            _check_revoker(actor, user)
        user = tx.catalog.expire_user(name, now)
        audit_log.record(ctx, tx, actor.actor if isinstance(actor, Principal) else actor, "user.revoked",
                         f"user:{user.name}", {"role": user.role.value, "party": user.party})
    ctx.principals.invalidate()  # after the commit: the next request with this token reads the store
    return user
