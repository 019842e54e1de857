"""Response models that exist only on the coordinator's HTTP surface (the rest are in protocols.wire)."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["Health", "PublicKey", "SignedHeadPublic"]


class Health(BaseModel):
    """Liveness, with the policy version in force."""

    status: str
    policy_version: str


class PublicKey(BaseModel):
    """The coordinator's Ed25519 audit key, raw public key as 64 hex characters."""

    public_key: str


class SignedHeadPublic(BaseModel):
    """The audit chain head signed by the coordinator (``coordinator.audit.chain.SignedHead``)."""

    seq: int
    hash: str
    signed_at: str
    key: str
    signature: str
