"""Ed25519 signing keys and the job-approval signature.

A party's data owner approves a job by signing its canonical digest with the party's Ed25519 key
(DESIGN.md §4). The node checks that signature against the key registered for its own party before it
touches data, so a coordinator cannot run a job a party never approved.

What a signature reveals: nothing beyond the job digest it covers, which is public to the federation.

Keys are pycryptodome's (generation, seed import and export); signing runs through OpenSSL (the
``cryptography`` package), which makes the same RFC 8032 signature (Ed25519 is deterministic) about
twenty times faster: the coordinator signs its audit head on every audit page view.
"""

from __future__ import annotations

from typing import Any

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.wire.canonical import canonical_json, sha256_hex
from protocols.wire.errors import CryptoError, RemoteProtocolError

__all__ = [
    "APPROVAL_CONTEXT",
    "SigningKey",
    "approval_message",
    "job_digest",
    "verify_approval",
    "verify_signature",
]

APPROVAL_CONTEXT = b"tandem/job-approval/v1\x00"


class SigningKey:
    """An Ed25519 private key with its raw 32-byte public key."""

    def __init__(self, key: ECC.EccKey) -> None:
        if not key.has_private() or key.curve != "Ed25519":
            raise ValueError("SigningKey needs a private Ed25519 key")
        self._key = key
        self._signer = Ed25519PrivateKey.from_private_bytes(bytes(key.seed))

    @classmethod
    def generate(cls) -> SigningKey:
        """Create a fresh random key."""
        return cls(ECC.generate(curve="ed25519"))

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """Load a key from its 32-byte seed (the private half; keep it secret)."""
        return cls(eddsa.import_private_key(seed))

    def seed(self) -> bytes:
        """Return the 32-byte private seed. Whoever holds it can approve jobs for the party."""
        return bytes(self._key.seed)

    @property
    def public_hex(self) -> str:
        """Raw public key, 64 lowercase hex characters, as registered with the coordinator."""
        return bytes(self._key.public_key().export_key(format="raw")).hex()

    def sign(self, message: bytes) -> str:
        """Sign ``message`` and return the 64-byte signature as hex."""
        return self._signer.sign(message).hex()

    def sign_approval(self, digest: str) -> str:
        """Sign the approval message for job digest ``digest``."""
        return self.sign(approval_message(digest))


def verify_signature(public_hex: str, message: bytes, signature_hex: str) -> None:
    """Check an Ed25519 signature.

    Raises:
        CryptoError: if the key or signature is malformed or the signature does not verify.
    """
    try:
        key = eddsa.import_public_key(bytes.fromhex(public_hex))
        eddsa.new(key, "rfc8032").verify(message, bytes.fromhex(signature_hex))
    except (ValueError, TypeError) as exc:
        raise CryptoError() from exc


def approval_message(digest: str) -> bytes:
    """Bytes an approver signs for the job whose canonical digest is ``digest``."""
    if len(digest) != 64:
        raise RemoteProtocolError("job digest must be 64 hex characters")
    return APPROVAL_CONTEXT + bytes.fromhex(digest)


def verify_approval(public_hex: str, digest: str, signature_hex: str) -> None:
    """Verify a party's approval signature over a job digest. Raises ``CryptoError`` on failure."""
    verify_signature(public_hex, approval_message(digest), signature_hex)


def job_digest(job_terms: dict[str, Any]) -> str:
    """Canonical digest of a job's terms (kind, purpose, inputs, params, policy version, id).

    Everything that decides what data is touched and what is released must be inside ``job_terms``;
    anything outside it can be changed without invalidating approvals.
    """
    return sha256_hex(canonical_json(job_terms))
