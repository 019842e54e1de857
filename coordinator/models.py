"""Database tables of the coordinator (SQLModel, table halves only).

The request (``XCreate``) and response (``XPublic``) halves of each family are the control-plane wire
models in ``protocols.wire.control``, shared with nodes and scripts; this module holds the
``X(table=True)`` halves and never leaves the store layer. Rows are converted to the public models
by ``coordinator.store._sql``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = [
    "TABLES",
    "ApprovalRow",
    "AuditEventRow",
    "BudgetChargeRow",
    "DatasetRow",
    "JobPartyRow",
    "JobResultRow",
    "JobRow",
    "PartyRow",
    "UserRow",
    "WebSessionRow",
    "utc",
]


def utc(value: datetime) -> datetime:
    """Attach UTC to a naive datetime read back from SQLite."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _ts() -> Any:
    return Field(sa_type=DateTime(timezone=True))


class PartyRow(SQLModel, table=True):
    """A registered party node (public keys and URL only)."""

    __tablename__ = "party"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=63)
    kind: str
    signing_key: str
    sealing_key: str
    tls_fingerprint: str
    node_url: str
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class UserRow(SQLModel, table=True):
    """A user; only the SHA-256 of the API token is stored."""

    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=63)
    role: str
    party: str | None = None
    signing_key: str | None = None
    token_hash: str = Field(unique=True, index=True)
    created_at: datetime = _ts()
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class DatasetRow(SQLModel, table=True):
    """A dataset schema registered by its owner party."""

    __tablename__ = "dataset"
    __table_args__ = (UniqueConstraint("party", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    party: str = Field(index=True)
    name: str
    description: str = ""
    row_count: int = Field(sa_type=BigInteger)
    fields: list[dict[str, Any]] = Field(sa_type=JSON)
    schema_digest: str
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class JobRow(SQLModel, table=True):
    """A job and its mutable state."""

    __tablename__ = "job"

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    purpose: str
    title: str
    inputs: list[dict[str, Any]] = Field(sa_type=JSON)
    params: dict[str, Any] = Field(sa_type=JSON)
    status: str = Field(index=True)
    status_detail: str = ""
    stage: str = ""
    progress: float = 0.0
    digest: str = ""
    policy_version: str
    decision: dict[str, Any] = Field(sa_type=JSON)
    required_approvals: list[str] = Field(sa_type=JSON)
    outputs: dict[str, Any] = Field(sa_type=JSON)
    created_by: str
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    attempt: int = 1


class JobPartyRow(SQLModel, table=True):
    """Which parties a job involves (owners of its input datasets)."""

    __tablename__ = "job_party"

    job_id: int = Field(foreign_key="job.id", primary_key=True)
    party: str = Field(primary_key=True, index=True)


class ApprovalRow(SQLModel, table=True):
    """A verified approval signature."""

    __tablename__ = "approval"
    __table_args__ = (UniqueConstraint("job_id", "approver"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True)
    approver: str
    signature: str
    signer_key: str
    user: str
    created_at: datetime = _ts()


class JobResultRow(SQLModel, table=True):
    """One party's final report on a job."""

    __tablename__ = "job_result"
    __table_args__ = (UniqueConstraint("job_id", "party"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True)
    party: str
    report: dict[str, Any] = Field(sa_type=JSON)
    created_at: datetime = _ts()


class BudgetChargeRow(SQLModel, table=True):
    """One ε charge on a (bank dataset, telco dataset) pair's budget; at most one per job."""

    __tablename__ = "budget_charge"
    __table_args__ = (Index("ix_budget_charge_pair", "bank_dataset_id", "telco_dataset_id"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", unique=True)
    bank_dataset_id: int = Field(sa_type=BigInteger)
    telco_dataset_id: int = Field(sa_type=BigInteger)
    epsilon: float
    charged_at: datetime = _ts()
    refunded_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class AuditEventRow(SQLModel, table=True):
    """One hash-chain record. ``seq`` is the primary key, so two appends can never share a number."""

    __tablename__ = "audit_event"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False}, sa_type=BigInteger)
    ts: str
    body: str = Field(sa_type=Text, description="canonical JSON of the record body")
    prev_hash: str
    hash: str


class WebSessionRow(SQLModel, table=True):
    """A browser session of the compliance pages. ``key`` is the SHA-256 of the cookie value, never the value."""

    __tablename__ = "web_session"

    key: str = Field(primary_key=True, max_length=64)
    token_hash: str
    user: str
    started: datetime = _ts()
    seen: datetime = Field(sa_type=DateTime(timezone=True), index=True)


TABLES = (PartyRow, UserRow, DatasetRow, JobRow, JobPartyRow, ApprovalRow, JobResultRow, BudgetChargeRow,
          AuditEventRow, WebSessionRow)
