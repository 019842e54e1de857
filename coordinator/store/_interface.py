"""What the coordinator needs from storage: five small stores that share one transaction.

``Store.write()`` opens a transaction and yields a ``Transaction`` whose ``catalog``, ``jobs``,
``budgets``, ``audit`` and ``sessions`` stores all write inside it, so a state change and its audit event commit
together or not at all. ``Store.read()`` gives the same view without taking the writer lock.

Two implementations pass the same contract test (``tests/coordinator/test_coord_store_contract.py``):
``MemoryStore`` and ``SqlStore`` (SQLite and PostgreSQL); what both share (``TransactionStores``, the ε
charge check) is here. This module has no ``__all__``: the package (``coordinator.store``) lists what it
re-exports, in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from coordinator.errors import BudgetExceeded, Conflict
from coordinator.policy import BUDGET_DIGITS, over_budget
from protocols.crypto.hashchain import ChainRecord
from protocols.wire.control import (
    ApprovalPublic,
    DatasetPublic,
    DatasetRegister,
    Decision,
    JobCreate,
    JobPublic,
    JobResultReport,
    JobStatus,
    PartyCreate,
    PartyPublic,
    UserCreate,
    UserPublic,
)

MAX_DB_INT = 2**63 - 1
"""Largest id any backend can hold; larger ids simply do not exist."""


def token_expiry(user: UserCreate, now: datetime) -> datetime:
    """When the API token of ``user``, created at ``now``, stops working."""
    return now + timedelta(days=user.expires_in_days)


class JobUpdate(BaseModel):
    """The mutable part of a job. Only fields explicitly set are written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: JobStatus | None = None
    status_detail: str | None = None
    stage: str | None = None
    progress: float | None = None
    digest: str | None = None
    required_approvals: list[str] | None = None
    outputs: dict[str, Any] | None = None
    policy_version: str | None = None
    decision: Decision | None = None
    attempt: int | None = None

    def changes(self) -> dict[str, Any]:
        """The fields that were set, as plain data."""
        return self.model_dump(mode="json", exclude_unset=True)


class BudgetCharge(BaseModel):
    """One ε charge in the ledger: a job's spend on its (bank dataset, telco dataset) pair."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: int
    bank_dataset_id: int
    telco_dataset_id: int
    epsilon: float
    charged_at: datetime
    refunded_at: datetime | None = None

    @property
    def pair(self) -> tuple[int, int]:
        """(bank dataset id, telco dataset id)."""
        return self.bank_dataset_id, self.telco_dataset_id


def charged_total(charge: BudgetCharge, spent: float, limit: float, *, outstanding: bool) -> float:
    """The pair's new unrefunded total once ``charge`` is added to its ``spent`` (the check both stores make).

    Args:
        charge: the entry to record.
        spent: the pair's unrefunded total before it.
        limit: the pair's budget.
        outstanding: whether the job already has an unrefunded charge.

    Raises:
        Conflict: ``outstanding``.
        BudgetExceeded: the charge does not fit ``limit`` (carries ``spent`` and ``limit``).
    """
    if outstanding:
        raise Conflict(f"job {charge.job_id} was already charged against its epsilon budget")
    if over_budget(spent, charge.epsilon, limit):
        raise BudgetExceeded(f"dataset pair {charge.pair} has spent {spent:g} of {limit:g}", spent=spent, limit=limit)
    return round(spent + charge.epsilon, BUDGET_DIGITS)


class CatalogStore(Protocol):
    """Parties, users and dataset schemas."""

    def upsert_party(self, party: PartyCreate, now: datetime) -> tuple[PartyPublic, bool]:
        """Insert or update a party by name; returns it and whether it was created."""
        ...

    def get_party(self, name: str) -> PartyPublic:
        """Return the party or raise ``NotFound``."""
        ...

    def list_parties(self) -> list[PartyPublic]:
        """All parties, by id."""
        ...

    def create_user(self, user: UserCreate, token_hash: str, now: datetime) -> UserPublic:
        """Insert a user; raise ``Conflict`` if the name is taken."""
        ...

    def get_user(self, name: str) -> UserPublic:
        """Return the user or raise ``NotFound``."""
        ...

    def user_by_token_hash(self, token_hash: str) -> UserPublic | None:
        """The user whose API token hashes to ``token_hash``, if any."""
        ...

    def list_users(self, party: str | None = None) -> list[UserPublic]:
        """All users (or one party's), by id."""
        ...

    def expire_user(self, name: str, at: datetime) -> UserPublic:
        """End user ``name``'s token at ``at`` (kept if it already ended earlier); raise ``NotFound`` if none."""
        ...

    def upsert_dataset(
        self, party: str, dataset: DatasetRegister, schema_digest: str, now: datetime
    ) -> tuple[DatasetPublic, bool]:
        """Insert or update ``party``'s dataset by name; returns it and whether it was created."""
        ...

    def get_dataset(self, dataset_id: int) -> DatasetPublic:
        """Return the dataset or raise ``NotFound``."""
        ...

    def list_datasets(self, party: str | None = None) -> list[DatasetPublic]:
        """All datasets (or one party's), by id."""
        ...


class JobStore(Protocol):
    """Jobs, the parties they involve, their approvals and per-party results."""

    def create_job(
        self, job: JobCreate, *, created_by: str, parties: list[str], decision: Decision, now: datetime
    ) -> JobPublic:
        """Insert a job in status ``draft`` with an empty digest; returns it with its new id."""
        ...

    def update_job(self, job_id: int, update: JobUpdate, now: datetime) -> JobPublic:
        """Apply ``update`` and bump ``updated_at``; raise ``NotFound`` for an unknown id."""
        ...

    def get_job(self, job_id: int) -> JobPublic:
        """Return the job with its approvals or raise ``NotFound``."""
        ...

    def job_parties(self, job_id: int) -> list[str]:
        """Names of the parties whose datasets the job uses, sorted."""
        ...

    def list_jobs(self, *, party: str | None = None, status: JobStatus | None = None) -> list[JobPublic]:
        """Jobs, by id, optionally only those involving ``party`` and/or in ``status``."""
        ...

    def add_approval(self, job_id: int, approval: ApprovalPublic) -> None:
        """Record an approval; raise ``Conflict`` if that approver already approved the job."""
        ...

    def record_result(self, job_id: int, party: str, report: JobResultReport, now: datetime) -> None:
        """Record ``party``'s final report; raise ``Conflict`` if it already reported."""
        ...

    def results(self, job_id: int) -> dict[str, JobResultReport]:
        """Final reports received so far, by party."""
        ...

    def clear_results(self, job_id: int) -> None:
        """Forget the parties' final reports (a retried job's new attempt is decided by its own reports)."""
        ...

    def clear_approvals(self, job_id: int) -> None:
        """Forget the job's approvals (they sign a digest the job no longer has; the audit log keeps them)."""
        ...


class BudgetStore(Protocol):
    """The ε ledger: at most one entry per job, charged, refunded, and charged again if the job is retried."""

    def charge(self, charge: BudgetCharge, limit: float) -> float:
        """Record ``charge`` unless the pair's unrefunded total would exceed ``limit``; return the new total.

        Check and insert are atomic per pair: concurrent transactions charging the same pair are
        serialised, so together they never exceed ``limit``. A job whose charge was refunded (a failed job
        that is retried) is charged again: its entry is replaced by ``charge``.

        Raises:
            BudgetExceeded: the charge does not fit (carries the pair's current total and ``limit``).
            Conflict: the job has an unrefunded charge.
        """
        ...

    def refund(self, job_id: int, now: datetime) -> BudgetCharge | None:
        """Mark the job's charge refunded at ``now`` and return it; None if it has no unrefunded charge."""
        ...

    def spent(self) -> dict[tuple[int, int], float]:
        """Unrefunded ε total per pair (pairs with nothing outstanding are absent)."""
        ...

    def charges(self) -> list[BudgetCharge]:
        """Every ledger entry (refunded ones included), by job id."""
        ...


class AuditStore(Protocol):
    """The append-only, hash-chained audit log."""

    def append(self, body: dict[str, Any], ts: str) -> ChainRecord:
        """Append the record that follows the current head. Appends are serialised; no gaps."""
        ...

    def head(self) -> ChainRecord | None:
        """The last record, or None for an empty log."""
        ...

    def events(self, after_seq: int = -1, limit: int = 100) -> list[ChainRecord]:
        """Up to ``limit`` records with ``seq > after_seq``, in order."""
        ...

    def containing(self, fragments: Sequence[str], through_seq: int) -> list[ChainRecord]:
        """Records up to ``through_seq`` whose body, as canonical JSON text, contains every fragment, in order.

        A coarse search the database does (``LIKE`` on the stored body): callers filter the result exactly.
        """
        ...


class WebSession(BaseModel):
    """A browser session of the compliance pages, as stored (``coordinator.api.web_sessions``).

    The store holds the SHA-256 of the session id, never the id (the cookie value) itself: whoever reads
    the table learns who is signed in and since when, but cannot use a session.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    """SHA-256 (hex) of the session id."""
    token_hash: str
    """SHA-256 of the API token the session was opened with (its user is re-read by it on every request)."""
    user: str
    started: datetime
    seen: datetime
    """When the session was last used (kept to within a minute: ``web_sessions.SEEN_STEP``)."""


class SessionStore(Protocol):
    """Browser sessions, shared by every coordinator process on the database."""

    def insert(self, session: WebSession) -> None:
        """Store a new session; a key already stored is an error (it never is: 256 random bits, hashed)."""
        ...

    def get(self, key: str) -> WebSession | None:
        """The session stored under ``key``, stale or not; None if there is none."""
        ...

    def set_seen(self, key: str, seen: datetime) -> None:
        """Record a use of the session at ``seen``; nothing if it is gone (a closed session stays closed)."""
        ...

    def delete(self, key: str) -> WebSession | None:
        """Remove the session and return it; None if there was none (of concurrent deletes, one gets it)."""
        ...

    def prune(self, *, seen_by: datetime, started_by: datetime, keep: int) -> int:
        """Remove stale sessions, then the least recently seen beyond ``keep``; return how many were removed.

        Stale: last seen at or before ``seen_by``, or started at or before ``started_by``. Concurrent
        prunes on PostgreSQL may each leave ``keep`` sessions before inserting one: the bound is then
        over by one per concurrent caller until the next prune.
        """
        ...


class Transaction(Protocol):
    """One unit of work over the five stores."""

    @property
    def catalog(self) -> CatalogStore:
        """Parties, users, datasets."""
        ...

    @property
    def jobs(self) -> JobStore:
        """Jobs, approvals, results."""
        ...

    @property
    def budgets(self) -> BudgetStore:
        """The ε ledger."""
        ...

    @property
    def audit(self) -> AuditStore:
        """The audit chain."""
        ...

    @property
    def sessions(self) -> SessionStore:
        """Browser sessions of the compliance pages."""
        ...


@dataclass(frozen=True)
class TransactionStores:
    """A ``Transaction``: the five stores of one unit of work, all over the same tables or session."""

    catalog: CatalogStore
    jobs: JobStore
    budgets: BudgetStore
    audit: AuditStore
    sessions: SessionStore


class Store(Protocol):
    """Opens transactions. Writes are serialised; a write that raises leaves no trace."""

    def write(self) -> AbstractContextManager[Transaction]:
        """A read-write transaction, committed on normal exit and rolled back on exception."""
        ...

    def read(self) -> AbstractContextManager[Transaction]:
        """A read-only view (writing through it is a bug)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
