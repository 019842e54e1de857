"""Control-plane wire models: everything nodes, people and scripts exchange with the coordinator.

One model per request/response. Requests forbid unknown fields so a typo is a 422 naming the field,
not a silently ignored option. Nothing here ever carries a row value: datasets travel as schemas with
coarse statistics only.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from protocols.wire.canonical import check_json_bounds

__all__ = [
    "PROTOCOL_VERSION",
    "ApprovalCreate",
    "ApprovalPublic",
    "AuditEventPublic",
    "DatasetPublic",
    "DatasetRegister",
    "Decision",
    "Desensitisation",
    "FieldCategory",
    "FieldSpec",
    "FieldStats",
    "JobCreate",
    "JobInput",
    "JobKind",
    "JobParams",
    "JobProgress",
    "JobPublic",
    "JobResultReport",
    "JobReject",
    "JobRetry",
    "JobStatus",
    "KeyType",
    "LedgerEntry",
    "PartyCreate",
    "PartyKind",
    "PartyPublic",
    "Purpose",
    "Role",
    "RuleOutcome",
    "UserCreate",
    "UserCreated",
    "UserPublic",
    "job_terms",
    "terms_of",
]

PROTOCOL_VERSION = "1"

Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Hex128 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{128}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_\-]{0,62}$")]
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartyKind(StrEnum):
    """Which side of the federation a party is."""

    BANK = "bank"
    TELCO = "telco"


class Role(StrEnum):
    """User roles. ``admin``/``analyst`` belong to a party; ``operator`` to the telco; ``auditor`` to none."""

    ADMIN = "admin"
    ANALYST = "analyst"
    OPERATOR = "operator"
    AUDITOR = "auditor"


class FieldCategory(StrEnum):
    """What a field is, for policy."""

    IDENTIFIER = "identifier"
    FEATURE = "feature"
    LABEL = "label"
    SENSITIVE = "sensitive"


class Desensitisation(StrEnum):
    """How a field must be transformed before it appears in any output."""

    MASK = "mask"
    GENERALISE = "generalise"
    DROP = "drop"
    NONE = "none"


class KeyType(StrEnum):
    """Identifier kinds that PSI can match on."""

    MOBILE = "mobile"
    ID_NUMBER = "id_number"
    IMEI = "imei"
    IDFA = "idfa"
    MAC = "mac"
    CUSTOMER_ID = "customer_id"


class Purpose(StrEnum):
    """Purposes a field may be used for (purpose binding)."""

    MARKETING = "marketing"
    RECOVERY = "recovery"
    RISK = "risk"
    PROPENSITY = "propensity"
    SCORING = "scoring"
    APP_PROMOTION = "app_promotion"
    SITE_SELECTION = "site_selection"
    RETENTION = "retention"


class JobKind(StrEnum):
    """Protocols a job can run (DESIGN.md §4)."""

    AUDIENCE_OVERLAP = "audience_overlap"
    RECOVERY = "recovery"
    TRAIN_RISK = "train_risk"
    TRAIN_PROPENSITY = "train_propensity"
    SCORE = "score"
    APP_PROMOTION = "app_promotion"
    SITE_SELECTION = "site_selection"
    SEGMENT_SIZES = "segment_sizes"
    CAMPAIGN_EVALUATION = "campaign_evaluation"
    CHURN_WARNING = "churn_warning"
    WIN_BACK = "win_back"


class JobStatus(StrEnum):
    """Job lifecycle: draft → pending_approval → approved → running → succeeded | failed | rejected | cancelled."""

    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


# ---------------------------------------------------------------- parties and users


class PartyCreate(_Request):
    """Register a party's node: its public keys, TLS certificate fingerprint and URL."""

    name: Name
    kind: PartyKind
    signing_key: Hex64 = Field(description="Ed25519 public key (raw, hex) that signs approvals")
    sealing_key: Hex64 = Field(description="X25519 public key (raw, hex) for sealed envelopes")
    tls_fingerprint: Hex64 = Field(description="SHA-256 of the node's DER TLS certificate")
    node_url: Annotated[str, StringConstraints(pattern=r"^https://[^\s/]+(:\d+)?/?$", max_length=200)]


class PartyPublic(BaseModel):
    """A registered party."""

    id: int
    name: str
    kind: PartyKind
    signing_key: str
    sealing_key: str
    tls_fingerprint: str
    node_url: str
    created_at: datetime


class UserCreate(_Request):
    """Create a user. ``party`` is required for admin/analyst/operator and forbidden for auditor."""

    name: Name
    role: Role
    party: Name | None = None
    signing_key: Hex64 | None = Field(default=None, description="auditor's Ed25519 key for approvals")
    expires_in_days: int = Field(default=90, ge=1, le=3650,
                                 description="the API token stops working this many days after creation")


class UserPublic(BaseModel):
    """A user as shown by the API (never the token)."""

    id: int
    name: str
    role: Role
    party: str | None
    signing_key: str | None
    created_at: datetime
    expires_at: datetime | None = Field(default=None, description="when the API token expires (None: never)")


class UserCreated(UserPublic):
    """Returned once at creation: the API token in clear. Only its hash is stored."""

    token: str


# ---------------------------------------------------------------- catalog


class FieldStats(BaseModel):
    """Coarse statistics of one field. Deliberately holds no value taken from any row."""

    model_config = ConfigDict(extra="forbid")

    null_fraction: float = Field(ge=0.0, le=1.0)
    distinct_bucket: Literal["1", "<10", "<100", "<10k", "<1M", ">=1M"]


class FieldSpec(_Request):
    """Catalog entry for one field, set by the data owner's governance file."""

    name: FieldName
    type: Literal["string", "integer", "float", "boolean", "date"]
    category: FieldCategory
    security_level: int = Field(ge=1, le=5, description="JR/T 0197 level, 1 (public) to 5 (most sensitive)")
    desensitisation: Desensitisation = Desensitisation.NONE
    purposes: list[Purpose] = Field(default_factory=list)
    key_type: KeyType | None = None
    stats: FieldStats | None = None


class DatasetRegister(_Request):
    """Register (or re-register) a dataset's schema. Never rows."""

    name: Name
    description: Annotated[str, StringConstraints(max_length=500)] = ""
    row_count: int = Field(ge=0, le=10_000_000_000)
    fields: list[FieldSpec] = Field(min_length=1, max_length=500)


class DatasetPublic(BaseModel):
    """A catalogued dataset."""

    id: int
    party: str
    name: str
    description: str
    row_count: int
    fields: list[FieldSpec]
    schema_digest: str
    created_at: datetime


# ---------------------------------------------------------------- jobs


class JobInput(_Request):
    """One dataset's part in a job and how each named field is used."""

    dataset_id: int = Field(ge=1)
    party: Name | None = Field(default=None, description=(
        "the party that owns the dataset; the coordinator fills it from the catalog (a value given must match) "
        "and it is signed with the terms, so each node knows its one counterparty from what it signed"))
    key_fields: list[FieldName] = Field(
        default_factory=list, max_length=8, description="PSI match keys, in priority order"
    )
    feature_fields: list[FieldName] = Field(default_factory=list, max_length=200)
    label_field: FieldName | None = None
    filter: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        default=None, description="predicate over this dataset's catalog fields, e.g. 'age >= 25 and app_bank == 0'"
    )
    output_fields: list[FieldName] = Field(default_factory=list, max_length=50)
    consent_field: FieldName | None = None


class JobParams(_Request):
    """Protocol parameters. Only those relevant to the job kind are read."""

    output_mode: Literal["count", "bank_ids", "reveal", "relay", "model", "scores", "bands"] | None = None
    match_cap: int | None = Field(default=None, ge=1, le=10_000_000)
    min_cell: int | None = Field(default=None, ge=1, le=100_000)
    epsilon: float | None = Field(default=None, ge=0.01, le=10.0, description=(
        "differential-privacy budget of the job's noised releases, 0.01 to 10 (noise scale 1/ε: smaller is "
        "noisier; below 0.01 the noise would swamp any count)"))
    message_template: Annotated[str, StringConstraints(max_length=500)] | None = None
    iterations: int | None = Field(default=None, ge=1, le=1000)
    trees: int | None = Field(default=None, ge=1, le=500)
    max_depth: int | None = Field(default=None, ge=1, le=10)
    model_job_id: int | None = Field(default=None, ge=1)
    n_sites: int | None = Field(default=None, ge=1, le=1000, description="site_selection: new sites to propose")
    radius_km: float | None = Field(default=None, gt=0.0, le=100.0,
                                    description="site_selection: catchment radius of a branch, km")
    pool_resolution: int | None = Field(default=None, ge=4, le=7, description=(
        "site_selection: H3 resolution that cells of fewer than k people are pooled into (default 6)"))
    area: tuple[float, float, float, float] | None = Field(default=None, description=(
        "site_selection: the study area as (south, west, north, east) in degrees; the telco counts only "
        "home and work locations inside it"))
    campaign_job_id: int | None = Field(default=None, ge=1, description=(
        "campaign_evaluation: the succeeded app_promotion job of the same pair whose arms are evaluated"))
    previous_evaluation_job_id: int | None = Field(default=None, ge=1, description=(
        "app_promotion: a succeeded campaign_evaluation of the same pair this campaign adjusts to"))
    # app_promotion (issue 12): the telco scores non-customers alone, screens, excludes bank customers by PSI
    score_threshold: float | None = Field(default=None, ge=0.0, le=1.0, description=(
        "app_promotion: least telco-alone propensity score of a candidate, 0 to 1"))
    bank_app: FieldName | None = Field(default=None, description=(
        "app_promotion: the bank's app as the telco's app usage names it (columns <app>_installed, <app>_days30)"))
    peer_apps: list[FieldName] | None = Field(default=None, max_length=10, description=(
        "app_promotion: peer apps whose usage (<app>_days30) the telco reports among the audience"))
    competitor_apps: list[FieldName] | None = Field(default=None, max_length=10, description=(
        "app_promotion: competitor apps whose usage (<app>_days30) the telco reports among the audience"))
    segment_field: FieldName | None = Field(default=None, description=(
        "app_promotion: the telco's segment column the audience sizes are broken down by"))
    holdout_share: float | None = Field(default=None, ge=0.0, le=0.5, description=(
        "app_promotion: share of the audience held out (not contacted) for evaluation, 0 to 0.5"))
    arm_seed: int | None = Field(default=None, ge=0, le=2**62, description=(
        "app_promotion: seed of the treatment/holdout draw (recorded with the arms at the telco)"))
    channel: Literal["sms", "webhook", "outbox"] | None = Field(default=None, description=(
        "app_promotion: the operator channel outreach goes through (relay mode)"))
    # segment_sizes (issue 12): the segment file itself, bound into the signed terms (protocols.wire.segments)
    segments: Annotated[str, StringConstraints(max_length=65_536)] | None = Field(default=None, description=(
        "segment_sizes: the text of the versioned segment file (YAML, protocols.wire.segments)"))
    segments_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        default=None, description="segment_sizes: SHA-256 (hex) of the segment file's text")
    segments_version: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="segment_sizes: the segment file's version")

    @field_validator("area")
    @classmethod
    def _area_is_a_box(cls, area: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if area is not None:
            south, west, north, east = area
            if not (-90 <= south < north <= 90 and -180 <= west < east <= 180):
                raise ValueError("give (south, west, north, east) with south < north and west < east, in degrees")
        return area


_LATER_PARAMS = frozenset({"n_sites", "radius_km", "pool_resolution", "area", "campaign_job_id",
                           "previous_evaluation_job_id",
                           "score_threshold", "bank_app", "peer_apps", "competitor_apps", "segment_field",
                           "holdout_share", "arm_seed", "channel",
                           "segments", "segments_sha256", "segments_version"})
"""Params added after jobs were first signed: left out of the signed terms while unset, so jobs signed
before they existed keep their digest (and their approvals)."""


class JobCreate(_Request):
    """Submit a job. It is evaluated by policy at once; allowed jobs wait for approvals."""

    kind: JobKind
    purpose: Purpose
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    inputs: list[JobInput] = Field(min_length=1, max_length=2)
    params: JobParams = Field(default_factory=JobParams)


class RuleOutcome(BaseModel):
    """One policy rule's verdict on a job."""

    rule_id: str
    allowed: bool
    field: str | None = None
    message: str
    fix: str | None = None


class Decision(BaseModel):
    """Policy engine verdict: allowed or not, every rule that fired, and the approvals required."""

    allowed: bool
    policy_version: str
    rules: list[RuleOutcome]
    required_approvals: list[str] = Field(description="'party:<name>' or 'auditor'")


class ApprovalCreate(_Request):
    """An approval: a signature over the job digest by a party's key (or an auditor's key)."""

    approver: Annotated[str, StringConstraints(pattern=r"^(party:[a-z][a-z0-9_\-]{0,62}|auditor)$")]
    signature: Hex128


class JobRetry(_Request):
    """Retry a failed job: run it again, with its checkpoints (``POST /jobs/{id}/retry``)."""

    reason: Annotated[str, StringConstraints(max_length=500)] = Field(
        default="", description="why the job is retried (e.g. the fixed cause of the failure); audited")


class JobReject(_Request):
    """Turn down a job pending approval, with a reason (``POST /jobs/{id}/reject``); it ends ``cancelled``."""

    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] = Field(
        description="why the job is turned down; stored in status_detail and audited as job.rejected")


class ApprovalPublic(BaseModel):
    """A recorded approval."""

    approver: str
    signature: str
    signer_key: str
    user: str
    created_at: datetime


class JobProgress(_Request):
    """Progress report from a node running a job."""

    stage: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    fraction: float = Field(ge=0.0, le=1.0)
    status: Literal["running", "succeeded", "failed"] = "running"
    detail: Annotated[str, StringConstraints(max_length=2000)] = ""
    attempt: int | None = Field(default=None, ge=1,
                                description="the job attempt this report is about; a report of another is refused")


MAX_OUTPUTS_DEPTH = 32
"""How deeply a node's reported outputs may nest (a level is one list or object)."""
MAX_OUTPUTS_BYTES = 256 * 1024
"""How large a node's reported outputs may be, as canonical JSON."""


MAX_LEDGER_ENTRIES = 2000
"""How many of its egress-ledger records for a job a node lists in its result report (the totals count all)."""


class LedgerEntry(_Request):
    """One egress-ledger record of a job as a node reports it: never the payload, only its size and SHA-256."""

    seq: int = Field(ge=0)
    kind: Annotated[str, StringConstraints(max_length=100)]
    peer: Annotated[str, StringConstraints(max_length=63)]
    bytes: int = Field(ge=0)
    digest: Hex64


class JobResultReport(_Request):
    """A node's final report: the outputs meant for the coordinator (aggregates only) and ledger receipts."""

    status: Literal["succeeded", "failed"]
    detail: Annotated[str, StringConstraints(max_length=2000)] = ""
    outputs: dict[str, Any] = Field(default_factory=dict, description=(
        f"aggregates only: at most {MAX_OUTPUTS_DEPTH} levels deep and {MAX_OUTPUTS_BYTES} bytes as JSON"))
    ledger_head: Hex64 | None = None
    messages_sent: int = Field(default=0, ge=0)
    bytes_sent: int = Field(default=0, ge=0)
    attempt: int | None = Field(default=None, ge=1,
                                description="the job attempt this report is about; a report of another is refused")
    ledger_entries: list[LedgerEntry] = Field(default_factory=list, max_length=MAX_LEDGER_ENTRIES, description=(
        f"the node's egress-ledger records of this job up to ledger_head (the first {MAX_LEDGER_ENTRIES}; "
        "messages_sent counts all): kind, peer, size and digest, never payload bytes"))

    @field_validator("outputs")
    @classmethod
    def _outputs_are_bounded(cls, outputs: dict[str, Any]) -> dict[str, Any]:
        check_json_bounds(outputs, max_depth=MAX_OUTPUTS_DEPTH, max_bytes=MAX_OUTPUTS_BYTES)
        return outputs


class JobPublic(BaseModel):
    """A job as the API shows it."""

    id: int
    kind: JobKind
    purpose: Purpose
    title: str
    inputs: list[JobInput]
    params: JobParams
    status: JobStatus
    status_detail: str
    stage: str
    progress: float
    digest: str
    policy_version: str
    decision: Decision
    required_approvals: list[str]
    approvals: list[ApprovalPublic]
    outputs: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime
    attempt: int = Field(default=1, ge=1, description="run attempt: 1, then one more per retry; nodes run each once")


class AuditEventPublic(BaseModel):
    """One audit event as exported: the hash-chain record with its body spelled out."""

    seq: int
    ts: str
    actor: str
    action: str
    object: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def job_terms(
    job_id: int,
    kind: JobKind,
    purpose: Purpose,
    title: str,
    inputs: list[JobInput],
    params: JobParams,
    policy_version: str,
    *,
    attempt: int | None,
) -> dict[str, Any]:
    """The terms an approval covers; ``protocols.crypto.signing.job_digest(job_terms(...))`` is what parties sign.

    Nodes recompute this from the job they fetched instead of trusting a digest sent by the coordinator.
    The terms name each input's owning party (``JobInput.party``), so a node knows from what it signed who
    its one counterparty is, and the run ``attempt``, so one signature authorises one run: a retry needs
    fresh signatures from every party.

    Args:
        job_id: The job's id.
        kind: What the job does.
        purpose: The purpose it is bound to.
        title: Its title, as the approvers saw it.
        inputs: Each party's dataset and how its fields are used (with ``party`` filled in).
        params: Protocol parameters; those added after jobs were first signed are left out while unset.
        policy_version: The version of the policy that allowed the job.
        attempt: The run attempt an approval authorises. ``None`` leaves it out: the job's identity across
            attempts (what a retried training job's checkpoints are bound to), never something to sign.
    """
    terms: dict[str, Any] = {
        "protocol_version": PROTOCOL_VERSION,
        "id": job_id,
        "kind": str(kind),
        "purpose": str(purpose),
        "title": title,
        "inputs": [i.model_dump(mode="json") for i in inputs],
        "params": {k: v for k, v in params.model_dump(mode="json").items() if v is not None or k not in _LATER_PARAMS},
        "policy_version": policy_version,
    }
    if attempt is not None:
        terms["attempt"] = attempt
    return terms


def terms_of(job: JobPublic, *, with_attempt: bool = True) -> dict[str, Any]:
    """``job_terms`` of a job as the API shows it.

    With ``with_attempt`` (the default) the terms of its current attempt, what an approval signs;
    without, the job's identity across attempts (what a retried training job's checkpoints and seed
    are bound to).
    """
    return job_terms(job.id, job.kind, job.purpose, job.title, job.inputs, job.params, job.policy_version,
                     attempt=job.attempt if with_attempt else None)
