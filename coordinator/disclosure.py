"""What each viewer may see of a job's outputs: its own party's, desensitised to its role's clearance.

Every path that shows a job's outputs goes through ``disclosed`` (``GET /jobs``, ``GET /jobs/{id}``,
the nodes' job listings, the pages). Outputs are stored per party (``job.outputs[party]``); a party's
users see only their own party's entry (the README's security table: in a count-mode overlap the telco
learns the bank's set size, never the bank's count); auditors see every party's. Each value then gets
its source field's rule (``protocols.wire.desensitise``) unless the viewer's clearance
(``policy.clearance``) covers its level.

Nodes ask ``disclosure`` what their token may see of a job's row-level results, and notify
``record_export`` before they write an export: the coordinator audits every export (who, what, why) and
refuses an unmasked one unless the policy grants the (role, purpose).
"""

from __future__ import annotations

from typing import Any

from coordinator.accounts import Principal
from coordinator.audit import log as audit_log
from coordinator.context import Context
from coordinator.errors import BadRequest, Forbidden, NotFound
from coordinator.store import Transaction
from protocols.wire.control import DatasetPublic, JobPublic, JobStatus, Role
from protocols.wire.desensitise import (
    Disclosure,
    ExportReceipt,
    ExportRecord,
    FieldRule,
    desensitise,
    job_field_rules,
    party_outputs,
)

__all__ = ["disclosed", "disclosed_outputs", "disclosure", "job_rules", "record_export"]


def job_rules(tx: Transaction, job: JobPublic) -> dict[str, FieldRule]:
    """Output key → rule from the catalog entries of the job's input datasets."""
    datasets: dict[int, DatasetPublic] = {}
    for inp in job.inputs:
        try:
            datasets[inp.dataset_id] = tx.catalog.get_dataset(inp.dataset_id)
        except NotFound:
            continue  # a dataset no longer in the catalog: its fields have no rule, outputs stay aggregates
    return job_field_rules(job.inputs, datasets)


def _clearance(ctx: Context, actor: Principal) -> int:
    return ctx.policy.clearance.level(actor.role.value) if actor.role is not None else 0


def disclosed_outputs(ctx: Context, tx: Transaction, actor: Principal, job: JobPublic) -> dict[str, Any]:
    """The job's outputs as ``actor`` may see them: own party only (auditors: all), desensitised."""
    mine = party_outputs(job.outputs, actor.party, everyone=actor.role == Role.AUDITOR)
    if not mine:
        return {}
    shown = desensitise(mine, job_rules(tx, job), _clearance(ctx, actor))
    return dict(shown)


def disclosed(ctx: Context, tx: Transaction, actor: Principal, job: JobPublic) -> JobPublic:
    """``job`` with its outputs replaced by what ``actor`` may see of them."""
    if not job.outputs:
        return job
    return job.model_copy(update={"outputs": disclosed_outputs(ctx, tx, actor, job)})


def _visible(tx: Transaction, actor: Principal, job_id: int) -> JobPublic:
    job = tx.jobs.get_job(job_id)
    if actor.role != Role.AUDITOR and actor.party not in tx.jobs.job_parties(job_id):
        raise NotFound(f"job {job_id} does not exist")
    return job


def disclosure(ctx: Context, actor: Principal, job_id: int) -> Disclosure:
    """What ``actor`` may see of job ``job_id``'s results: clearance, full-export grant, each field's rule."""
    role = actor.role.value if actor.role is not None else ""
    with ctx.store.read() as tx:
        job = _visible(tx, actor, job_id)
        rules = job_rules(tx, job)
    return Disclosure(job_id=job_id, role=role, party=actor.party, purpose=job.purpose.value,
                      clearance=_clearance(ctx, actor),
                      full_export=ctx.policy.clearance.may_export_full(role, job.purpose.value), fields=rules)


def record_export(ctx: Context, actor: Principal, job_id: int, body: ExportRecord) -> ExportReceipt:
    """Audit one export of a job's row-level results (``output.exported``) before the node writes it.

    Raises:
        NotFound: the job is not visible to the caller.
        Forbidden: an unmasked export the policy does not grant this role
            for the job's purpose.
        BadRequest: a full export without a reason, or a job that has not succeeded.
    """
    role = actor.role.value if actor.role is not None else ""
    with ctx.store.write() as tx:
        job = _visible(tx, actor, job_id)
        if job.status != JobStatus.SUCCEEDED:
            raise BadRequest(f"job {job_id} is {job.status}; only a succeeded job's results can be exported",
                             field="job_id", fix="wait until the job has succeeded")
        if body.full and not ctx.policy.clearance.may_export_full(role, job.purpose.value):
            raise Forbidden(f"role {role!r} may not export {job.purpose.value} results unmasked (policy "
                            f"clearance.full_export has no grant for it)",
                            fix="export without --full (values masked to your clearance), or ask compliance to "
                            "grant the role in policy.yaml")
        if body.full and not body.reason.strip():
            raise BadRequest("a full export needs a reason", field="body.reason",
                             fix="say why, e.g. --reason 'call-back list for ticket 1234'")
        audit_log.record(ctx, tx, actor.actor, "output.exported", f"job:{job_id}", {
            "party": actor.party, "role": role, "file": body.file[:300], "row_count": body.rows,
            "columns": body.columns[:50], "full": body.full, "reason": body.reason[:500], "sha256": body.sha256,
            "clearance": _clearance(ctx, actor)})
        head = tx.audit.head()
    return ExportReceipt(job_id=job_id, audit_seq=head.seq if head is not None else 0, full=body.full)
