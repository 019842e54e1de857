"""Approvals as the node sees them: sign its own party's approval, and check it before touching data.

The node never trusts the coordinator on either input of the check:

* the digest is recomputed from the job's terms (``job_terms``), not read from ``job.digest``, so a
  job whose kind, purpose, inputs or parameters were altered after signing no longer verifies;
* the public key is the one the node itself holds (its own signing key), not the registry's copy,
  which a compromised coordinator could swap for a key it controls;
* the terms name each input's party and the run attempt, so the signature fixes the node's one
  counterparty and authorises one run;
* where the terms call for a compliance officer (reveal mode, a field of this node at or above the
  node's own auditor level, or the coordinator listing ``auditor`` among the approvers), an ``auditor``
  approval must verify under one of the auditor keys configured on this node (``auditor_keys``), never
  a key the coordinator supplies.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from protocols.crypto.signing import SigningKey, job_digest, verify_approval
from protocols.wire.control import ApprovalCreate, JobPublic, terms_of
from protocols.wire.errors import CryptoError, ProtocolError, RemoteProtocolError

__all__ = [
    "ApprovalRefused",
    "approver_id",
    "job_terms_of",
    "lineage_digest",
    "recompute_digest",
    "sign_approval",
    "signed_peer",
    "verify_auditor_approval",
    "verify_own_approval",
]


class ApprovalRefused(ProtocolError):
    """The job carries no valid approval by this node's party; the node must not run it."""

    status_hint = 403


def approver_id(party: str) -> str:
    """The approver string of a party, ``party:<name>``."""
    return f"party:{party}"


def job_terms_of(job: JobPublic) -> dict[str, Any]:
    """The canonical terms of ``job``'s current attempt (what an approval signs)."""
    return terms_of(job)


def lineage_digest(job: JobPublic) -> str:
    """Digest of ``job``'s terms without the attempt, never signed.

    It is the same for every attempt of the job: a retried training job's checkpoints are bound to it.
    """
    return job_digest(terms_of(job, with_attempt=False))


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


def _verifies(job: JobPublic, approver: str, keys: Iterable[str]) -> bool:
    digest = recompute_digest(job)
    for approval in job.approvals:
        if approval.approver != approver:
            continue
        for key in keys:
            try:
                verify_approval(key, digest, approval.signature)
            except (CryptoError, RemoteProtocolError, ValueError):
                continue
            return True
    return False


def verify_auditor_approval(job: JobPublic, reasons: list[str], auditor_keys: Collection[str]) -> None:
    """Check a compliance officer's approval of ``job`` when ``reasons`` (why one is needed) is not empty.

    Args:
        job: The job as fetched from the coordinator.
        reasons: Why this node requires an auditor's signature (empty: it does not).
        auditor_keys: Hex Ed25519 public keys of the auditors this node trusts (its own configuration).

    Raises:
        ApprovalRefused: an auditor's approval is required and none verifies under ``auditor_keys``.
    """
    if not reasons:
        return
    why = "; ".join(reasons)
    if not auditor_keys:
        raise ApprovalRefused(f"refused: this job needs a compliance officer's approval ({why}) and this node "
                              "trusts no auditor key; set auditor_keys in the node's settings")
    if not _verifies(job, "auditor", auditor_keys):
        raise ApprovalRefused(f"refused: this job needs a compliance officer's approval ({why}) and no "
                              "auditor signature verifies under the auditor keys this node trusts")


def signed_peer(job: JobPublic, own_party: str, own_dataset: Callable[[int], bool]) -> str | None:
    """The counterparty the signed terms give this node, after checking the terms' parties.

    Args:
        job: The job as fetched from the coordinator.
        own_party: This node's party.
        own_dataset: Whether a dataset id is registered on this node.

    Returns:
        The one other party named by the inputs, or ``None`` for a job with no other party.

    Raises:
        ApprovalRefused: an input names no party, a dataset registered on this node is attributed to
            another party, or the inputs name more than one other party.
    """
    others = set()
    for i, inp in enumerate(job.inputs):
        if inp.party is None:
            raise ApprovalRefused(f"refused: the terms do not name the party of input {i} (dataset "
                                  f"{inp.dataset_id}); the coordinator must fill inputs.party")
        if own_dataset(inp.dataset_id) and inp.party != own_party:
            raise ApprovalRefused(f"refused: the terms attribute dataset {inp.dataset_id}, registered on this "
                                  f"node, to party {inp.party!r}")
        if inp.party != own_party:
            others.add(inp.party)
    if len(others) > 1:
        raise ApprovalRefused(f"refused: the terms name {len(others)} other parties; a job has one counterparty")
    return others.pop() if others else None


def sign_approval(job: JobPublic, signing_key: SigningKey, party: str) -> ApprovalCreate:
    """Sign ``job``'s recomputed digest with the party's key.

    Args:
        job: the job to approve; its terms are re-hashed locally.
        signing_key: the party's Ed25519 key. Whoever holds it approves jobs for the party.
        party: the party's name.
    """
    return ApprovalCreate(approver=approver_id(party), signature=signing_key.sign_approval(recompute_digest(job)))
