"""Users, API tokens and the authenticated ``Principal``.

API tokens are 32 random bytes (URL-safe base64), shown once at creation; only their SHA-256 is
stored. Every token expires (``UserCreate.expires_in_days``, default 90); an expired token is refused
like an unknown one but with a message saying what to do. The bootstrap token from settings may create
users and nothing else. Failed logins are audited with a short hash of the token's first characters,
never the token.

An ``operator`` runs the telco's node: it may belong only to a party of kind ``telco``. This is
checked when the operator is created (if its party is registered) and when a party registers (if
operators already name it), so no order of calls produces a bank operator.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from coordinator.audit import log as audit_log
from coordinator.context import Context
from coordinator.errors import BadRequest, Forbidden, NotFound, Unauthorized
from coordinator.store import Transaction
from protocols.wire.control import PartyKind, Role, UserCreate, UserCreated, UserPublic

__all__ = ["BOOTSTRAP", "EXPIRED", "Principal", "authenticate", "check_operator_party", "create_user", "hash_token",
           "new_token"]

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


def _prefix_hash(token: str) -> str:
    return hashlib.sha256(token[:6].encode("utf-8")).hexdigest()[:12]


def authenticate(ctx: Context, token: str | None, bootstrap_token: str | None, *, channel: str = "api") -> Principal:
    """Resolve a bearer token to a principal.

    Args:
        ctx: service context (its clock decides expiry).
        token: the presented token, if any.
        bootstrap_token: the configured bootstrap token, if any.
        channel: recorded in ``auth.failed`` events: ``api`` (bearer header) or ``web`` (login form).

    Raises:
        Unauthorized: no token, one that matches no user, or an expired one (the last two are audited
            as ``auth.failed``).
    """
    if not token:
        raise Unauthorized("missing bearer token", fix="send 'Authorization: Bearer <API token>'")
    if bootstrap_token and hmac.compare_digest(token.encode(), bootstrap_token.encode()):
        return Principal(BOOTSTRAP, None)
    with ctx.store.read() as tx:
        user = tx.catalog.user_by_token_hash(hash_token(token))
    details = {"token_prefix_hash": _prefix_hash(token), "channel": channel}
    if user is None:
        audit_log.record_alone(ctx, "anonymous", "auth.failed", "auth", details)
        raise Unauthorized("invalid API token", fix="use the token printed when your user was created")
    if user.expires_at is not None and user.expires_at <= ctx.clock():
        audit_log.record_alone(ctx, "anonymous", "auth.failed", "auth",
                               {**details, "reason": "token expired", "user": user.name})
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


def check_operator_party(role: Role, party: str, kind: PartyKind, *, field: str) -> None:
    """Refuse an operator of a party that is not a telco.

    Raises:
        BadRequest: ``role`` is operator and ``kind`` is not telco; ``field`` names the offending field.
    """
    if role == Role.OPERATOR and kind != PartyKind.TELCO:
        raise BadRequest(f"an operator runs the telco's node, but party {party!r} is a {kind.value}",
                         field=field, fix="create the operator for the telco party; a bank's node uses an admin "
                                          "account of the bank")


def _check_operator(tx: Transaction, body: UserCreate) -> None:
    if body.role != Role.OPERATOR or body.party is None:
        return
    try:
        party = tx.catalog.get_party(body.party)
    except NotFound:
        return  # checked again when the party registers (registry.register_party)
    check_operator_party(body.role, party.name, party.kind, field="body.role")


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
        BadRequest: party/role/signing key do not fit together, or an operator of a bank party.
        Forbidden: an admin creating an admin/auditor or a user of another party.
        Conflict: the name is taken.
    """
    _check_shape(body)
    if isinstance(actor, Principal):
        _check_creator(actor, body)
    token = new_token()
    with ctx.store.write() as tx:
        _check_operator(tx, body)
        user = tx.catalog.create_user(body, hash_token(token), ctx.clock())
        audit_log.record(ctx, tx, actor.actor if isinstance(actor, Principal) else actor, "user.created",
                         f"user:{user.name}", {"role": user.role.value, "party": user.party})
    return UserCreated(**user.model_dump(), token=token)
