"""The compliance console's reads and actions: the approvals inbox, one job's review, the policy and its history.

Plain functions over the store, the audit log and the loaded policy, used by the console pages
(``coordinator.api.routes.console_pages``); they add no rights of their own. Every read goes through
``coordinator.jobs`` (so a party admin sees only its own party's jobs, an auditor every job), and the
two actions are ``jobs.approve`` and ``jobs.reject``, which audit what they change or refuse.

What waits on whom: a job ``pending_approval`` waits on the auditor while ``"auditor"`` is among its
``required_approvals`` without an approval, and on a party admin while ``"party:<their party>"`` is.

Policy history is derived, not stored: each coordinator start records ``policy.loaded`` with the
policy's version and the SHA-256 of its file (``coordinator.app.build_context``), and each job keeps
the ``policy_version`` it was decided under; the history joins the two. A version loaded with two
different digests (a file edited without a new version) is shown once per digest, flagged, because its
jobs cannot be told apart by version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from coordinator import jobs
from coordinator.accounts import Principal
from coordinator.context import Context
from coordinator.errors import BadRequest, Forbidden, NotFound
from coordinator.policy import Policy
from coordinator.policy._rules import RULES
from protocols.wire.control import ApprovalCreate, DatasetPublic, JobPublic, JobStatus, Role

__all__ = [
    "AUDIT_PAGE",
    "JobReview",
    "PolicyVersion",
    "RuleText",
    "approve_with",
    "approver_for",
    "inbox",
    "job_review",
    "missing_approvals",
    "policy_history",
    "rule_catalog",
    "sign_command",
    "waiting_on",
]

AUDIT_PAGE = 1000
"""Audit events read per store call while scanning for ``policy.loaded``."""
_SIGNATURE = re.compile(r"^[0-9a-f]{128}$")


@dataclass(frozen=True)
class JobReview:
    """One job as the approval page shows it: the job, its datasets from the catalog, who has yet to sign."""

    job: JobPublic
    datasets: dict[int, DatasetPublic]
    missing: list[str]
    approver: str | None
    """What the viewer signs as (``auditor`` or ``party:<name>``) if the job waits on the viewer, else None."""


@dataclass(frozen=True)
class RuleText:
    """One policy rule: its id, what it checks, and the policy's parameters it reads."""

    rule_id: str
    text: str
    parameters: dict[str, str]


@dataclass(frozen=True)
class PolicyVersion:
    """One policy the coordinator loaded: version, file digest, when first and last loaded, its jobs."""

    version: str
    digest: str
    first_seq: int
    first_ts: str
    last_ts: str
    loads: int
    job_ids: list[int]
    in_force: bool
    ambiguous: bool
    """The same version was also loaded with another digest: its jobs may belong to either."""


# ---------------------------------------------------------------- the inbox


def approver_for(actor: Principal) -> str | None:
    """What ``actor`` signs approvals as: ``auditor``, ``party:<name>`` for a party admin, else None."""
    if actor.role == Role.AUDITOR:
        return "auditor"
    if actor.role == Role.ADMIN and actor.party:
        return f"party:{actor.party}"
    return None


def missing_approvals(job: JobPublic) -> list[str]:
    """Required approvers of ``job`` who have not signed yet, in the policy's order."""
    signed = {a.approver for a in job.approvals}
    return [a for a in job.required_approvals if a not in signed]


def waiting_on(actor: Principal, job: JobPublic) -> bool:
    """Whether ``job`` waits for ``actor``'s signature (pending, and ``actor``'s approver role is missing)."""
    approver = approver_for(actor)
    return (job.status == JobStatus.PENDING_APPROVAL and approver is not None
            and approver in missing_approvals(job))


def inbox(ctx: Context, actor: Principal) -> list[JobPublic]:
    """The jobs the caller may see that wait for the caller's signature, oldest first."""
    return sorted((j for j in jobs.list_jobs(ctx, actor) if waiting_on(actor, j)), key=lambda j: j.id)


def job_review(ctx: Context, actor: Principal, job_id: int) -> JobReview:
    """One job with its datasets' catalog entries (``NotFound`` if the caller may not see it)."""
    job = jobs.get_job(ctx, actor, job_id)
    datasets: dict[int, DatasetPublic] = {}
    with ctx.store.read() as tx:
        for inp in job.inputs:
            try:
                datasets[inp.dataset_id] = tx.catalog.get_dataset(inp.dataset_id)
            except NotFound:
                continue  # shown as "not in the catalog" (policy R01 denies such a job anyway)
    approver = approver_for(actor) if waiting_on(actor, job) else None
    return JobReview(job, datasets, missing_approvals(job), approver)


def sign_command(job_id: int, approver: str) -> str:
    """The command that shows the job's terms, recomputes its digest and prints the signature to paste.

    An auditor signs with the key file of ``job auditor-key``; a party admin signs on its node with the
    party key (``tandem-<party> approve`` posts the approval itself, so there is nothing to paste).
    """
    if approver == "auditor":
        return f"tandem-bank job approve {job_id} --auditor-key officer.key --sign-only"
    return f"tandem-{approver.removeprefix('party:')} approve {job_id}"


def approve_with(ctx: Context, actor: Principal, job_id: int, signature: str) -> JobPublic:
    """Record the caller's approval of ``job_id`` from a signature made outside the browser.

    The caller signs as ``approver_for(actor)``; the coordinator verifies the signature against the
    caller's registered key (an auditor's own ``signing_key``, a party's key for its admin) over the
    job's current digest (``jobs.approve``, which audits a refusal as ``approval.refused``).

    Raises:
        Forbidden: the caller is neither an auditor nor a party admin, or the signature does not verify.
        BadRequest: ``signature`` is not 128 hex characters (names ``form.signature``).
        Conflict: the job no longer waits for approvals.
    """
    approver = approver_for(actor)
    if approver is None:
        raise Forbidden(f"role {actor.label!r} does not approve jobs", field="form.signature",
                        fix="an auditor or an admin of an involved party signs")
    signature = signature.strip().lower()
    if not _SIGNATURE.fullmatch(signature):
        raise BadRequest(f"a signature is 128 hex characters (64 bytes); got {len(signature)} characters",
                         field="form.signature", fix=f"paste the hex that `{sign_command(job_id, approver)}` prints")
    return jobs.approve(ctx, actor, job_id, ApprovalCreate(approver=approver, signature=signature))


# ---------------------------------------------------------------- the policy


def _kinds(policy: Policy, attr: str) -> str:
    values = []
    for kind, rule in sorted(policy.kinds.items()):
        value: Any = getattr(rule, attr)
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, frozenset | tuple | list):
            value = ", ".join(sorted(str(v) for v in value)) or "none"
        values.append(f"{kind}: {value}")
    return "; ".join(values)


def _parameters(policy: Policy) -> dict[str, dict[str, str]]:
    """The policy values each rule reads, by rule id (rules that read none are absent)."""
    def sset(values: frozenset[Any]) -> str:
        return ", ".join(sorted(str(v) for v in values))

    eps = {"epsilon_budget_per_pair": f"{policy.epsilon_budget_per_pair:g}",
           "epsilon_max_per_job": f"{policy.epsilon_max_per_job:g}", "epsilon_default": f"{policy.epsilon_default:g}"}
    return {
        "R03-kind-purpose": {"purposes per kind": _kinds(policy, "purposes")},
        "R04-inputs-shape": {"required inputs per kind": _kinds(policy, "required_inputs"),
                             "optional inputs per kind": _kinds(policy, "optional_inputs")},
        "R05-identifier-use": {"reveal_output_key_types": sset(policy.reveal_output_key_types)},
        "R08-label-locality": {"label required per kind": _kinds(policy, "label_required")},
        "R10-auditor-level": {"auditor_level": str(policy.auditor_level)},
        "R11-min-cell": {"k_min_cell": str(policy.k_min_cell)},
        "R12-output-mode": {"output modes per kind": _kinds(policy, "output_modes"),
                            "output mode required per kind": _kinds(policy, "output_mode_required")},
        "R13-reveal-recovery": {"max_recovery_match_cap": str(policy.max_recovery_match_cap),
                                "consent_categories": sset(policy.consent_categories),
                                "reveal_output_key_types": sset(policy.reveal_output_key_types)},
        "R16-epsilon-budget": eps,
    }


def rule_catalog(policy: Policy) -> list[RuleText]:
    """Every rule of the engine in evaluation order, with what it checks and ``policy``'s values it reads."""
    params = _parameters(policy)
    texts = []
    for rule_id, rule in RULES.items():
        doc = (rule.check.__doc__ or rule.ok_text).strip().splitlines()[0]
        text = doc.split(": ", 1)[1] if doc[:1] == "R" and ": " in doc else doc
        texts.append(RuleText(rule_id, text.replace("``", ""), params.get(rule_id, {})))
    return texts


def _loads(ctx: Context) -> list[tuple[int, str, str, str]]:
    """(seq, ts, version, digest) of every ``policy.loaded`` event, oldest first."""
    found: list[tuple[int, str, str, str]] = []
    after = -1
    with ctx.store.read() as tx:
        while batch := tx.audit.events(after, AUDIT_PAGE):
            for rec in batch:
                body = rec.body
                details = body.get("details") or {}
                if body.get("action") == "policy.loaded" and isinstance(details, dict):
                    found.append((rec.seq, rec.ts, str(details.get("version", "")), str(details.get("digest", ""))))
            after = batch[-1].seq
    return found


def policy_history(ctx: Context, actor: Principal) -> list[PolicyVersion]:
    """Every policy the coordinator loaded (newest first) with the ids of the caller's visible jobs under each.

    The policy in force (``ctx.policy``) is always listed, even if its load was never audited.
    """
    loads = _loads(ctx)
    if not any(v == ctx.policy.version and d == ctx.policy.digest for _, _, v, d in loads):
        loads.append((-1, "", ctx.policy.version, ctx.policy.digest))
    by_job: dict[str, list[int]] = {}
    for job in jobs.list_jobs(ctx, actor):
        by_job.setdefault(job.policy_version, []).append(job.id)
    digests: dict[str, set[str]] = {}
    for _, _, version, digest in loads:
        digests.setdefault(version, set()).add(digest)
    grouped: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for seq, ts, version, digest in loads:
        grouped.setdefault((version, digest), []).append((seq, ts))
    versions = [PolicyVersion(version, digest, seen[0][0], seen[0][1], seen[-1][1], len(seen),
                              sorted(by_job.get(version, [])),
                              (version, digest) == (ctx.policy.version, ctx.policy.digest), len(digests[version]) > 1)
                for (version, digest), seen in grouped.items()]
    return sorted(versions, key=lambda v: (v.in_force, v.first_seq), reverse=True)
