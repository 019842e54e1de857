"""Approvals as the node sees them: sign its own party's approval, and check it before touching data.

The node never trusts the coordinator on either input of the check:

* the digest is recomputed from the job's terms (``job_terms``), not read from ``job.digest``, so a
  job whose kind, purpose, inputs or parameters were altered after signing no longer verifies;
* the public key is the one the node itself holds (its own signing key), not the registry's copy,
  which a compromised coordinator could swap for a key it controls.
"""

from __future__ import annotations

from typing import Any

from protocols.crypto.signing import SigningKey, job_digest, verify_approval
from protocols.wire.control import ApprovalCreate, JobPublic, job_terms
from protocols.wire.errors import CryptoError, ProtocolError, RemoteProtocolError

__all__ = ["ApprovalRefused", "approver_id", "job_terms_of", "recompute_digest", "sign_approval", "verify_own_approval"]


class ApprovalRefused(ProtocolError):
    """The job carries no valid approval by this node's party; the node must not run it."""

    status_hint = 403


def approver_id(party: str) -> str:
    """The approver string of a party, ``party:<name>``."""
    return f"party:{party}"


def job_terms_of(job: JobPublic) -> dict[str, Any]:
    """The canonical terms of ``job`` (what an approval signs)."""
    return job_terms(job.id, job.kind, job.purpose, job.title, job.inputs, job.params, job.policy_version)


def recompute_digest(job: JobPublic) -> str:
    """Digest of the job's terms, computed locally (``job.digest`` is never used)."""
    return job_digest(job_terms_of(job))


def verify_own_approval(job: JobPublic, own_party: str, own_signing_key_pub: str) -> None:
    """Check that ``job`` carries a valid approval by ``own_party`` over its current terms.

    Args:
        job: the job as fetched from the coordinator.
        own_party: this node's party name.
        own_signing_key_pub: hex Ed25519 public key of the party, taken from the node's own key file.

    Raises:
        ApprovalRefused: if no approval by ``party:<own_party>`` verifies under the node's key over the
            recomputed digest.
    """
    approver = approver_id(own_party)
    digest = recompute_digest(job)
    for approval in job.approvals:
        if approval.approver != approver:
            continue
        try:
            verify_approval(own_signing_key_pub, digest, approval.signature)
        except (CryptoError, RemoteProtocolError, ValueError):
            continue
        return
    raise ApprovalRefused(f"refused: approval signature for {approver} does not verify")


def sign_approval(job: JobPublic, signing_key: SigningKey, party: str) -> ApprovalCreate:
    """Sign ``job``'s recomputed digest with the party's key.

    Args:
        job: the job to approve; its terms are re-hashed locally.
        signing_key: the party's Ed25519 key. Whoever holds it approves jobs for the party.
        party: the party's name.
    """
    return ApprovalCreate(approver=approver_id(party), signature=signing_key.sign_approval(recompute_digest(job)))
