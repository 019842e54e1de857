"""Job service: submission under policy, signed approvals, cancellation, retry, node progress and results.

Every function opens one write transaction in which the state change and its audit events are
written together. Party users see only jobs that involve their party; an invisible job is reported
as not found, so ids of other parties' jobs leak nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import TypeAdapter

from coordinator import budgets
from coordinator.accounts import Principal
from coordinator.audit import log as audit_log
from coordinator.context import Context
from coordinator.disclosure import disclosed
from coordinator.errors import BadRequest, BudgetExceeded, Conflict, Forbidden, NotFound, PolicyDenied
from coordinator.job_references import check_references
from coordinator.job_states import (
    FINAL,
    REPORTABLE,
    RETRYABLE,
    WAITING_STAGE,
    can_move,
    outcome_of_results,
    status_after_decision,
    status_after_retry,
)
from coordinator.policy import evaluate
from coordinator.store import CATALOG, JobUpdate, Transaction
from protocols.crypto.signing import job_digest, verify_approval
from protocols.wire.canonical import canonical_json, sha256_hex
from protocols.wire.control import (
    ApprovalCreate,
    ApprovalPublic,
    DatasetPublic,
    Decision,
    JobCreate,
    JobProgress,
    JobPublic,
    JobResultReport,
    JobRetry,
    JobStatus,
    Role,
    job_terms,
)
from protocols.wire.errors import CryptoError

__all__ = ["approve", "cancel", "get_job", "list_jobs", "node_jobs", "reject", "report_progress", "report_result",
           "retry", "submit"]

logger = logging.getLogger(__name__)
MAX_AUDITED_DENIALS = 50


# ---------------------------------------------------------------- helpers


def _visible_job(tx: Transaction, actor: Principal, job_id: int) -> tuple[JobPublic, list[str]]:
    job = tx.jobs.get_job(job_id)
    parties = tx.jobs.job_parties(job_id)
    if actor.role != Role.AUDITOR and actor.party not in parties:
        raise NotFound(f"job {job_id} does not exist")
    return job, parties


def _move(ctx: Context, tx: Transaction, actor: str, job: JobPublic, target: JobStatus, detail: str,
          **changes: Any) -> JobPublic:
    if not can_move(job.status, target):
        raise Conflict(f"job {job.id} is {job.status}; it cannot become {target}")
    if target == JobStatus.APPROVED:
        budgets.charge(ctx, tx, job)
    elif target in (JobStatus.CANCELLED, JobStatus.FAILED):
        budgets.refund_unreleased(ctx, tx, job, f"job {target.value}")
    updated = tx.jobs.update_job(job.id, JobUpdate(status=target, status_detail=detail, **changes), ctx.clock())
    audit_log.record(ctx, tx, actor, "job.status", f"job:{job.id}",
                     {"from": job.status.value, "to": target.value, "detail": detail[:500]})
    logger.info("job %s: %s -> %s", job.id, job.status, target)
    return updated


def _decision_details(decision: Decision) -> dict[str, Any]:
    denied = [{"rule_id": r.rule_id, "field": r.field} for r in decision.rules if not r.allowed]
    return {"allowed": decision.allowed, "policy_version": decision.policy_version,
            "rules_passed": sorted({r.rule_id for r in decision.rules if r.allowed}),
            "rules_denied": denied[:MAX_AUDITED_DENIALS], "denials": len(denied),
            "required_approvals": decision.required_approvals}


# ---------------------------------------------------------------- submission


def _input_datasets(tx: Transaction, body: JobCreate) -> dict[int, DatasetPublic]:
    datasets: dict[int, DatasetPublic] = {}
    for i, inp in enumerate(body.inputs):
        try:
            datasets[inp.dataset_id] = tx.catalog.get_dataset(inp.dataset_id)
        except NotFound as exc:
            raise NotFound(exc.message, field=f"body.inputs.{i}.dataset_id", fix="GET /api/v1/datasets") from None
    return datasets


def _bind_terms(ctx: Context, body: JobCreate, datasets: dict[int, DatasetPublic]) -> JobCreate:
    """``body`` with what the nodes read from the signed terms filled in.

    That is each input's owning party, and ``params.min_cell`` (the policy's k when unset), so a node
    never relies on its own copy of the policy.

    Raises:
        BadRequest: an input names a party that does not own its dataset (names ``body.inputs.N.party``).
    """
    inputs = []
    for i, inp in enumerate(body.inputs):
        owner = datasets[inp.dataset_id].party
        if inp.party is not None and inp.party != owner:
            raise BadRequest(f"dataset {inp.dataset_id} belongs to party {owner!r}, not {inp.party!r}",
                             field=f"body.inputs.{i}.party", fix=f"set party to {owner!r} or leave it out")
        inputs.append(inp.model_copy(update={"party": owner}))
    params = body.params
    if params.min_cell is None:
        params = params.model_copy(update={"min_cell": ctx.policy.k_min_cell})
    return body.model_copy(update={"inputs": inputs, "params": params})


def _decide(ctx: Context, tx: Transaction, actor: Principal,
            body: JobCreate) -> tuple[JobCreate, dict[int, DatasetPublic], list[str], Decision]:
    """What ``submit`` and ``dry_run`` both do before storing.

    Returns the bound terms, their datasets and parties, and the policy's decision under the current budgets.

    Raises:
        NotFound, BadRequest: as ``_input_datasets`` and ``_bind_terms``.
        Forbidden: none of the inputs belongs to the caller's party.
    """
    datasets = _input_datasets(tx, body)
    body = _bind_terms(ctx, body, datasets)
    parties = sorted({d.party for d in datasets.values()})
    if actor.party not in parties:
        raise Forbidden(f"a job must use at least one dataset of your party {actor.party!r}", field="body.inputs")
    check_references(tx.jobs.get_job, body, parties)  # a campaign evaluation's campaign, a campaign's evaluation
    kinds = {p.name: p.kind for p in tx.catalog.list_parties()}
    return body, datasets, parties, evaluate(body, datasets, kinds, ctx.policy, tx.budgets.spent())


def submit(ctx: Context, actor: Principal, body: JobCreate) -> JobPublic:
    """Evaluate a job under policy and store it as ``rejected`` or ``pending_approval``.

    The stored terms name each input's party and carry ``min_cell`` (see ``_bind_terms``); an approval
    signs them together with the run attempt (``job_terms``).

    Raises:
        NotFound: an input dataset does not exist (names ``body.inputs.N.dataset_id``).
        BadRequest: an input names the wrong party (names ``body.inputs.N.party``).
        Forbidden: none of the inputs belongs to the caller's party.
    """
    with ctx.store.write() as tx:
        body, datasets, parties, decision = _decide(ctx, tx, actor, body)
        now = ctx.clock()
        job = tx.jobs.create_job(body, created_by=actor.name, parties=parties, decision=decision, now=now)
        digest = job_digest(job_terms(job.id, body.kind, body.purpose, body.title, body.inputs, body.params,
                                      decision.policy_version, attempt=job.attempt))
        audit_log.record(ctx, tx, actor.actor, "job.submitted", f"job:{job.id}",
                         {"kind": body.kind.value, "purpose": body.purpose.value, "parties": parties,
                          "datasets": sorted(datasets), "digest": digest})
        audit_log.record(ctx, tx, "coordinator", "policy.decided", f"job:{job.id}", _decision_details(decision))
        status, detail = status_after_decision(decision)
        # the digest is stored with the first move (one UPDATE): nobody sees the draft in between
        return _move(ctx, tx, "coordinator", job, status, detail, digest=digest,
                     required_approvals=decision.required_approvals)


def dry_run(ctx: Context, actor: Principal, body: JobCreate) -> Decision:
    """The decision ``submit`` would reach for ``body`` now, under the current policy and budgets; stores nothing.

    Raises:
        NotFound: an input dataset does not exist (names ``body.inputs.N.dataset_id``).
        BadRequest: an input names the wrong party (names ``body.inputs.N.party``).
        Forbidden: none of the inputs belongs to the caller's party.
    """
    with ctx.store.read() as tx:
        return _decide(ctx, tx, actor, body)[3]


# ---------------------------------------------------------------- approvals


def _signer_key(tx: Transaction, actor: Principal, approver: str) -> str:
    if approver == "auditor":
        if actor.role != Role.AUDITOR or not actor.signing_key:
            raise Forbidden("only an auditor user with a registered signing_key may approve as 'auditor'",
                            field="body.approver")
        return actor.signing_key
    party = approver.removeprefix("party:")
    if actor.role != Role.ADMIN or actor.party != party:
        raise Forbidden(f"only an admin of party {party!r} may approve as {approver}", field="body.approver")
    return tx.catalog.get_party(party).signing_key


def _approve(ctx: Context, actor: Principal, job_id: int, body: ApprovalCreate) -> JobPublic:
    with ctx.store.write() as tx:
        job, _ = _visible_job(tx, actor, job_id)
        if job.status != JobStatus.PENDING_APPROVAL:
            raise Conflict(f"job {job_id} is {job.status}; approvals are accepted only while pending_approval")
        if body.approver not in job.required_approvals:
            raise BadRequest(f"{body.approver} is not a required approver of job {job_id} "
                             f"(required: {', '.join(job.required_approvals)})", field="body.approver")
        key = _signer_key(tx, actor, body.approver)
        verify_approval(key, job.digest, body.signature)
        tx.jobs.add_approval(job_id, ApprovalPublic(approver=body.approver, signature=body.signature,
                                                    signer_key=key, user=actor.name, created_at=ctx.clock()))
        audit_log.record(ctx, tx, actor.actor, "approval.added", f"job:{job_id}",
                         {"approver": body.approver, "signer_key": key, "digest": job.digest})
        job = tx.jobs.get_job(job_id)
        missing = sorted(set(job.required_approvals) - {a.approver for a in job.approvals})
        if missing:
            return tx.jobs.update_job(job_id, JobUpdate(status_detail="waiting for approvals: " + ", ".join(missing)),
                                      ctx.clock())
        return _move(ctx, tx, "coordinator", job, JobStatus.APPROVED, "all required approvals present")


def approve(ctx: Context, actor: Principal, job_id: int, body: ApprovalCreate) -> JobPublic:
    """Record a signed approval; the job becomes ``approved`` once every required approver signed.

    Raises:
        Forbidden: the caller may not sign as ``body.approver``, or the signature does not verify over
            the job digest with the approver's registered key (audited as ``approval.refused``).
        BadRequest: the approver is not required for this job.
        Conflict: the job is not pending approval, or this approver already approved.
        BudgetExceeded: this approval would approve a noised count whose ε no longer fits its dataset
            pair's budget (R16-epsilon-budget; audited as ``budget.refused``). The approval is not
            recorded and the job stays pending.
    """
    try:
        return _approve(ctx, actor, job_id, body)
    except BudgetExceeded as exc:
        audit_log.record_alone(ctx, actor.actor, "budget.refused", f"job:{job_id}",
                               {"approver": body.approver, "reason": exc.message[:500]})
        exc.audited = True
        raise
    except CryptoError:
        audit_log.record_alone(ctx, actor.actor, "approval.refused", f"job:{job_id}",
                               {"approver": body.approver, "reason": "signature does not verify"})
        refused = Forbidden(f"signature does not verify against the signing key registered for {body.approver} "
                            f"over the digest of job {job_id}", field="body.signature",
                            fix="sign protocols.crypto.signing.approval_message(job.digest) with that Ed25519 key")
        refused.audited = True
        raise refused from None


# ---------------------------------------------------------------- cancellation and reads


def cancel(ctx: Context, actor: Principal, job_id: int) -> JobPublic:
    """Cancel a job that is not final. Allowed to its creator and to admins of an involved party.

    An ε charge is refunded unless a party already reported a successful result (``budgets``).
    """
    with ctx.store.write() as tx:
        job, _ = _visible_job(tx, actor, job_id)
        if actor.name != job.created_by and actor.role != Role.ADMIN:
            raise Forbidden(f"only the creator of job {job_id} or an admin of an involved party may cancel it")
        if job.status in FINAL:
            raise Conflict(f"job {job_id} is already {job.status}")
        return disclosed(ctx, tx, actor, _move(ctx, tx, actor.actor, job, JobStatus.CANCELLED,
                                               f"cancelled by {actor.actor}"))


MAX_REASON_CHARS = 500


def reject(ctx: Context, actor: Principal, job_id: int, reason: str) -> JobPublic:
    """Turn down a job that waits for approvals, with a reason; it ends ``cancelled`` and never runs.

    ``rejected`` is the policy's verdict at submission (``job_states``: only ``draft`` may become
    ``rejected``), so a person's refusal ends the job as ``cancelled`` with ``status_detail``
    ``"rejected by <who>: <reason>"``, audited as ``job.rejected`` with who and why (and the usual
    ``job.status``). Allowed to an auditor and to an admin of an involved party.

    Raises:
        BadRequest: ``reason`` is empty or longer than ``MAX_REASON_CHARS`` (names ``body.reason``).
        NotFound: the job does not exist or involves none of the caller's party.
        Forbidden: the caller is neither an auditor nor an admin.
        Conflict: the job is not ``pending_approval``.
    """
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_CHARS:
        raise BadRequest(f"a rejection needs a reason of 1 to {MAX_REASON_CHARS} characters (got {len(reason)})",
                         field="body.reason", fix="say why the job is turned down, e.g. the purpose is too broad")
    with ctx.store.write() as tx:
        job, _ = _visible_job(tx, actor, job_id)
        if actor.role not in (Role.AUDITOR, Role.ADMIN):
            raise Forbidden(f"only an auditor or an admin of an involved party may reject job {job_id}")
        if job.status != JobStatus.PENDING_APPROVAL:
            raise Conflict(f"job {job_id} is {job.status}; only a job pending approval can be rejected",
                           fix="cancel it instead (POST /api/v1/jobs/{id}/cancel)")
        audit_log.record(ctx, tx, actor.actor, "job.rejected", f"job:{job_id}",
                         {"by": actor.actor, "role": actor.label, "reason": reason, "digest": job.digest})
        return _move(ctx, tx, actor.actor, job, JobStatus.CANCELLED, f"rejected by {actor.actor}: {reason}")


# ---------------------------------------------------------------- retry


def _spec(job: JobPublic) -> JobCreate:
    return JobCreate(kind=job.kind, purpose=job.purpose, title=job.title, inputs=job.inputs, params=job.params)


def _denied(job_id: int, decision: Decision) -> PolicyDenied:
    rules = [r for r in decision.rules if not r.allowed]
    ids = ", ".join(dict.fromkeys(r.rule_id for r in rules))
    return PolicyDenied(f"job {job_id} is now denied by policy {decision.policy_version}: {ids}; it stays failed",
                        denials=[(r.rule_id, r.field, r.message, r.fix) for r in rules[:MAX_AUDITED_DENIALS]])


def _retry(ctx: Context, actor: Principal, job_id: int, body: JobRetry) -> JobPublic:
    with ctx.store.write() as tx:
        job, _ = _visible_job(tx, actor, job_id)
        if actor.name != job.created_by and actor.role != Role.ADMIN:
            raise Forbidden(f"only the creator of job {job_id} or an admin of an involved party may retry it")
        if job.status not in RETRYABLE:
            raise Conflict(f"job {job_id} is {job.status}; only a failed job can be retried")
        if any(r.status == "succeeded" for r in tx.jobs.results(job_id).values()):
            raise Conflict(f"a party already reported success for job {job_id}; its outputs stand",
                           fix="submit a new job")
        spec = _spec(job)
        kinds = {p.name: p.kind for p in tx.catalog.list_parties()}
        decision = evaluate(spec, _input_datasets(tx, spec), kinds, ctx.policy, tx.budgets.spent())
        if not decision.allowed:
            raise _denied(job_id, decision)
        attempt = job.attempt + 1
        digest = job_digest(job_terms(job.id, job.kind, job.purpose, job.title, job.inputs, job.params,
                                      decision.policy_version, attempt=attempt))
        kept: list[str] = []  # an approval signs one attempt: every party signs the rerun afresh
        tx.jobs.clear_approvals(job_id)
        tx.jobs.clear_results(job_id)
        status, detail = status_after_retry(decision, kept, attempt)
        update = JobUpdate(attempt=attempt, digest=digest, policy_version=decision.policy_version, decision=decision,
                           required_approvals=decision.required_approvals, outputs={}, stage="", progress=0.0)
        retried = tx.jobs.update_job(job_id, update, ctx.clock())
        audit_log.record(ctx, tx, actor.actor, "job.retried", f"job:{job_id}",
                         {"attempt": attempt, "reason": body.reason, "previous_detail": job.status_detail[:500],
                          "digest": digest, "digest_changed": digest != job.digest, "approvals_kept": kept})
        audit_log.record(ctx, tx, "coordinator", "policy.decided", f"job:{job_id}", _decision_details(decision))
        return _move(ctx, tx, actor.actor, retried, status, detail)


def retry(ctx: Context, actor: Principal, job_id: int, body: JobRetry) -> JobPublic:
    """Run a failed job again as a new attempt (allowed to its creator and to admins of an involved party).

    The job is evaluated again under the current policy and ε budgets. Its approvals never carry over:
    an approval signs one attempt (``job_terms``), so the retried job waits in ``pending_approval`` until
    every required approver signs the new attempt (a node runs no job twice on one signature). The
    parties' reports and outputs of the failed attempt are cleared; the nodes run the new ``attempt``
    (a training job resumes from its checkpoints). Audited as ``job.retried`` with the caller's reason.

    Raises:
        Forbidden: the caller is neither the creator nor an admin of an involved party.
        Conflict: the job is not ``failed``, or a party already reported success (its outputs stand).
        PolicyDenied: the policy now denies the job (each denying rule with its fix; audited as
            ``job.retry_refused``); the job stays ``failed``.
        BudgetExceeded: its ε no longer fits its dataset pair's budget (audited as ``budget.refused``).
    """
    try:
        return _retry(ctx, actor, job_id, body)
    except PolicyDenied as exc:
        audit_log.record_alone(ctx, actor.actor, "job.retry_refused", f"job:{job_id}",
                               {"reason": body.reason, "rules_denied": [d[0] for d in exc.denials]})
        exc.audited = True
        raise
    except BudgetExceeded as exc:
        audit_log.record_alone(ctx, actor.actor, "budget.refused", f"job:{job_id}",
                               {"retry": True, "reason": exc.message[:500]})
        exc.audited = True
        raise


def get_job(ctx: Context, actor: Principal, job_id: int) -> JobPublic:
    """One job, if the caller may see it; outputs: its own party's, desensitised to its clearance."""
    with ctx.store.read() as tx:
        return disclosed(ctx, tx, actor, _visible_job(tx, actor, job_id)[0])


def list_jobs(ctx: Context, actor: Principal) -> list[JobPublic]:
    """All jobs for an auditor; the jobs involving their party for anyone else (outputs as ``get_job``)."""
    with ctx.store.read() as tx:
        found = tx.jobs.list_jobs(party=None if actor.role == Role.AUDITOR else actor.party)
        return [disclosed(ctx, tx, actor, job) for job in found]


def node_jobs(ctx: Context, actor: Principal, status: JobStatus) -> list[JobPublic]:
    """Jobs involving the caller's party in ``status`` (what a node polls for; outputs as ``get_job``)."""
    with ctx.store.read() as tx:
        return [disclosed(ctx, tx, actor, job) for job in tx.jobs.list_jobs(party=actor.party, status=status)]


_JOB_LIST = TypeAdapter(list[JobPublic])


def _poll_key(actor: Principal, status: JobStatus) -> tuple[str, str | None, str, str]:
    # what node_jobs' answer depends on: the party's jobs, and the role (auditors see all outputs; clearance)
    return ("node_jobs", actor.party, actor.label, status.value)


def cached_node_jobs(ctx: Context, actor: Principal, status: JobStatus) -> bytes | None:
    """``node_jobs_json``'s answer if still current, else None (then call ``node_jobs_json``).

    Current: no write of jobs in ``status`` or of the catalog committed since it was read, and it is
    under a second old (writes by other processes are not counted). No I/O: the API answers a hit
    without a thread-pool hop.
    """
    versions = getattr(ctx.store, "versions", None)
    if versions is None:
        return None
    return ctx.answers.get(_poll_key(actor, status), versions(status.value, CATALOG))


def node_jobs_json(ctx: Context, actor: Principal, status: JobStatus) -> bytes:
    """``node_jobs`` as the JSON the API sends, kept in ``ctx.answers`` under the versions read before it."""
    versions = getattr(ctx.store, "versions", None)
    if versions is None:
        return _JOB_LIST.dump_json(node_jobs(ctx, actor, status), by_alias=True)
    version = versions(status.value, CATALOG)  # before the read: a write committing meanwhile bumps it after
    body = _JOB_LIST.dump_json(node_jobs(ctx, actor, status), by_alias=True)
    ctx.answers.put(_poll_key(actor, status), version, body)
    return body


# ---------------------------------------------------------------- node reports


def _reportable(tx: Transaction, actor: Principal, job_id: int, what: str, attempt: int | None) -> JobPublic:
    job, _ = _visible_job(tx, actor, job_id)
    if job.status not in REPORTABLE:
        raise Conflict(f"job {job_id} is {job.status}; {what} is accepted only for approved or running jobs")
    if attempt is not None and attempt != job.attempt:
        raise Conflict(f"{what} of attempt {attempt} of job {job_id}, which is at attempt {job.attempt}; "
                       "a stale report is refused", field="body.attempt")
    return job


def report_progress(ctx: Context, actor: Principal, job_id: int, body: JobProgress) -> JobPublic:
    """Record a node's progress.

    The first report starts an approved job (``running``), except a report with stage ``waiting``,
    which leaves it ``approved`` with the report's detail (e.g. no protocol for its kind yet).
    A report with status ``failed`` fails the job (refunding an ε charge, as no result was released).
    Success is decided by results, not progress. A report naming another ``attempt`` than the job's
    (a node still finishing an attempt that failed and was retried) is refused (``Conflict``).
    """
    with ctx.store.write() as tx:
        job = _reportable(tx, actor, job_id, "progress", body.attempt)
        audit_log.record(ctx, tx, actor.actor, "job.progress", f"job:{job_id}",
                         {"party": actor.party, "stage": body.stage, "fraction": body.fraction,
                          "status": body.status})
        detail = body.detail or job.status_detail
        if body.status == "failed":
            moved = _move(ctx, tx, actor.actor, job, JobStatus.FAILED, f"{actor.party}: {body.detail or 'failed'}",
                          stage=body.stage, progress=body.fraction)
        elif job.status == JobStatus.APPROVED and body.stage != WAITING_STAGE:
            moved = _move(ctx, tx, actor.actor, job, JobStatus.RUNNING, body.detail, stage=body.stage,
                          progress=body.fraction)
        else:
            moved = tx.jobs.update_job(job_id, JobUpdate(stage=body.stage, progress=body.fraction,
                                                         status_detail=detail), ctx.clock())
        return disclosed(ctx, tx, actor, moved)  # the answer to a node shows its own party's outputs only


def _check_outputs(outputs: dict[str, Any]) -> str:
    try:
        encoded = canonical_json(outputs)
    except (TypeError, ValueError):
        raise BadRequest("outputs must be plain JSON without NaN or Infinity", field="body.outputs") from None
    return sha256_hex(encoded)


def report_result(ctx: Context, actor: Principal, job_id: int, body: JobResultReport) -> JobPublic:
    """Record the caller's party's final report; finish the job when the reports decide it.

    The job fails as soon as one party reports failure and succeeds once every involved party has
    reported success. A failure report the job's state refuses (``Conflict``: another party failed the
    attempt first, or it was retried) is still audited as ``job.result`` with ``accepted: false``, so
    every attempt's ledger receipts are on record for the cross-check. Only the aggregates the node chose
    to report are stored. A failed job's ε charge is refunded only if no party reported success (a
    successful report may carry the released count).
    """
    outputs_digest = _check_outputs(body.outputs)
    details = {"party": actor.party, "status": body.status, "outputs_digest": outputs_digest,
               "output_keys": sorted(body.outputs)[:50], "ledger_head": body.ledger_head,
               "messages_sent": body.messages_sent, "bytes_sent": body.bytes_sent, "attempt": body.attempt}
    try:
        with ctx.store.write() as tx:
            job = _reportable(tx, actor, job_id, "a result", body.attempt)
            assert actor.party is not None
            tx.jobs.record_result(job_id, actor.party, body, ctx.clock())
            audit_log.record(ctx, tx, actor.actor, "job.result", f"job:{job_id}", details)
            outputs = {**job.outputs, actor.party: body.outputs}
            final, detail = outcome_of_results(tx.jobs.job_parties(job_id), tx.jobs.results(job_id))
            if final is None:
                moved = tx.jobs.update_job(job_id, JobUpdate(outputs=outputs, status_detail=detail), ctx.clock())
            else:
                progress = 1.0 if final == JobStatus.SUCCEEDED else job.progress
                moved = _move(ctx, tx, actor.actor, job, final, detail, outputs=outputs, progress=progress)
            return disclosed(ctx, tx, actor, moved)  # the answer to a node shows its own party's outputs only
    except Conflict as exc:
        if body.status == "failed" and actor.party is not None:
            # a party's failure of an attempt the job has moved past (another party failed it first, or it
            # was retried): it changes nothing, but the audit log keeps it with the party's ledger receipts,
            # so the ledger cross-check accounts for what that attempt sent
            audit_log.record_alone(ctx, actor.actor, "job.result", f"job:{job_id}",
                                   details | {"accepted": False, "refused": exc.message[:300],
                                              "detail": body.detail[:500]})
        raise
