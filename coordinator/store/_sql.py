"""SQLModel store over SQLite (demo) or PostgreSQL (production).

Serialising audit appends, so the chain never forks or skips a number:

- SQLite: write transactions take a process lock and start with ``BEGIN IMMEDIATE`` (the database
  write lock), so another process (the CLI) cannot interleave either.
- PostgreSQL: a transaction's first append takes ``pg_advisory_xact_lock`` and reads the head in the
  same round trip (``tandem_audit_locked_head``), and holds the lock until the transaction ends; its
  records are inserted in one statement at its end. ``seq`` is the primary key as a second line of defence.

ε budget charges are serialised the same way (the SQLite writer lock; on PostgreSQL an advisory lock
of their own, taken before the pair's total is read), so concurrent approvals cannot overspend.

The ``audit_event`` table refuses UPDATE and DELETE with triggers created by ``init_schema`` (and
TRUNCATE too on PostgreSQL); the application never needs either. A trigger stops mistakes and casual
edits, not the owner of the database file, who can drop it: the signed head kept outside the database
(``coordinator.audit.heads``, fed by ``on_audit_commit``) is what notices a tail deleted that way.

A SQLite database file (and its WAL and shared-memory files) is created readable by its owner only (0600).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from datetime import datetime
from pathlib import Path
from select import POLLERR, POLLHUP, POLLIN, poll
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, insert, inspect, or_, text, update
from sqlalchemy import select as sa_select  # takes a tuple of columns (sqlmodel's overloads do not)
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, col, func, select

from coordinator.errors import Conflict, NotFound
from coordinator.models import (
    TABLES,
    ApprovalRow,
    AuditEventRow,
    BudgetChargeRow,
    DatasetRow,
    JobPartyRow,
    JobResultRow,
    JobRow,
    PartyRow,
    UserRow,
    WebSessionRow,
    utc,
)
from coordinator.policy import BUDGET_DIGITS
from coordinator.store._interface import (
    MAX_DB_INT,
    BudgetCharge,
    JobUpdate,
    TransactionStores,
    WebSession,
    charged_total,
    token_expiry,
)
from protocols.crypto.hashchain import ChainRecord, next_record
from protocols.wire import control as wire
from protocols.wire.canonical import canonical_json

__all__ = ["SqlStore", "init_schema", "make_engine"]

logger = logging.getLogger(__name__)

PG_POOL_SIZE, PG_POOL_OVERFLOW = 20, 20
"""PostgreSQL connections kept open, and opened beyond them under bursts: enough for every thread of the
server's pool (anyio's default of 40) to hold one, so a request never waits for a connection (SQLAlchemy's
default of 5 + 10 made a third of them wait under 100 polling nodes)."""
_TOUCHED = "tandem_touched"
CATALOG = "catalog"
"""``SqlStore.versions`` key of parties and datasets; each job status is a key of its own (its value)."""
AUDIT_LOCK_KEY = 0x7A4D_0A0D  # arbitrary constant naming "the audit chain" among advisory locks
BUDGET_LOCK_KEY = 0x7A4D_0B0D  # ... and "the epsilon ledger"

_PG_IMMUTABLE_AUDIT = (
    """CREATE OR REPLACE FUNCTION tandem_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP; END $$""",
    "DROP TRIGGER IF EXISTS audit_event_no_change ON audit_event",
    """CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION tandem_audit_append_only()""",
    "DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event",
    """CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION tandem_audit_append_only()""",
)
_PG_LOCKED_HEAD = f"""CREATE OR REPLACE FUNCTION tandem_audit_locked_head()
    RETURNS TABLE (seq BIGINT, ts VARCHAR, body TEXT, prev_hash VARCHAR, hash VARCHAR) LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock({AUDIT_LOCK_KEY});
        RETURN QUERY SELECT e.seq, e.ts, e.body, e.prev_hash, e.hash FROM audit_event e ORDER BY e.seq DESC LIMIT 1;
    END $$"""
"""Take the audit chain's lock, then read the head, in one round trip. The function is VOLATILE (the
default), so its query takes a fresh snapshot after the lock is granted: it sees the head that the
previous holder committed."""
_SQLITE_IMMUTABLE_AUDIT = tuple(
    f"""CREATE TRIGGER IF NOT EXISTS audit_event_no_{op.lower()} BEFORE {op} ON audit_event
    BEGIN SELECT RAISE(ABORT, 'audit_event is append-only: {op} refused'); END"""
    for op in ("UPDATE", "DELETE")
)
_PRIVATE_SUFFIXES = ("", "-wal", "-shm", "-journal")
"""A SQLite database's own file and the files SQLite keeps beside it."""


def make_engine(url: str, *, schema: str | None = None) -> Engine:
    """Create an engine for ``url``.

    Args:
        url: SQLAlchemy URL. ``sqlite://`` is a private in-memory database (one shared connection).
        schema: PostgreSQL only: put every table in this schema (via ``search_path``); tests use it
            to isolate runs.
    """
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    connect_args = {"options": f"-csearch_path={schema}"} if schema else {}
    engine = create_engine(url, connect_args=connect_args, pool_size=PG_POOL_SIZE, max_overflow=PG_POOL_OVERFLOW)
    event.listen(engine, "checkout", _drop_if_closed_by_server)
    return engine


def _drop_if_closed_by_server(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Refuse to hand out a pooled PostgreSQL connection that the server has closed (SQLAlchemy connects anew).

    Instead of ``pool_pre_ping`` (a ``SELECT 1`` round trip before every transaction), one non-blocking
    ``poll``: an idle connection between transactions has nothing to read, while a backend that was
    terminated (a server restart, ``pg_terminate_backend``, ``idle_session_timeout``) has sent its FATAL
    message and closed the socket, so it reads as ready. A connection dropped without a word (a network
    cut) is not seen here: its first statement fails, and SQLAlchemy then invalidates every connection
    pooled before the failure, so only the transactions running at that moment fail.
    """
    if dbapi_conn.closed:
        raise DisconnectionError("connection closed")
    poller = poll()
    poller.register(dbapi_conn.fileno(), POLLIN | POLLERR | POLLHUP)
    if poller.poll(0):
        raise DisconnectionError("the server closed the connection (or sent it an unsolicited message)")


def _sqlite_engine(url: str) -> Engine:
    memory = url in ("sqlite://", "sqlite:///:memory:")
    if memory:
        engine = create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    else:
        _private_file(Path(url.removeprefix("sqlite:///")))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        if not memory:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = "DEFERRED" if conn.get_execution_options().get("tandem_read") else "IMMEDIATE"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _private_file(path: Path) -> None:
    """Create the database file with mode 0600 before SQLite does (SQLite gives its WAL files the same mode).

    A file left 0644 by an earlier version is tightened to 0600, with its WAL and shared-memory files. An
    existing database is never opened here: closing any descriptor of a file drops the POSIX locks that
    this process's SQLite connections hold on it.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for suffix in _PRIVATE_SUFFIXES:
        item = path.with_name(path.name + suffix)
        if item.exists() and item.stat().st_mode & 0o077:
            item.chmod(0o600)


_ADDED_COLUMNS = (("app_user", "expires_at", "TIMESTAMP WITH TIME ZONE"),
                  ("job", "attempt", "INTEGER NOT NULL DEFAULT 1"))
"""Columns added after a table was first created (``create_all`` never alters an existing table)."""


def _add_missing_columns(engine: Engine) -> None:
    """Bring databases created by earlier versions up to date (nullable columns, or with a default)."""
    inspector = inspect(engine)
    for table, column, sql_type in _ADDED_COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))


def init_schema(engine: Engine) -> None:
    """Create missing tables and columns, and the triggers that make ``audit_event`` append-only."""
    SQLModel.metadata.create_all(engine, tables=[t.__table__ for t in TABLES])  # type: ignore[union-attr]
    _add_missing_columns(engine)
    triggers = {"postgresql": (*_PG_IMMUTABLE_AUDIT, _PG_LOCKED_HEAD),
                "sqlite": _SQLITE_IMMUTABLE_AUDIT}.get(engine.dialect.name, ())
    with engine.begin() as conn:
        for statement in triggers:
            conn.execute(text(statement))


def _valid_id(value: int) -> bool:
    return 1 <= value <= MAX_DB_INT


def _party_public(row: PartyRow) -> wire.PartyPublic:
    return wire.PartyPublic.model_validate({**row.model_dump(exclude={"updated_at"}),
                                            "created_at": utc(row.created_at)})


def _user_public(row: UserRow) -> wire.UserPublic:
    expires = utc(row.expires_at) if row.expires_at else None
    return wire.UserPublic.model_validate({**row.model_dump(exclude={"token_hash"}), "created_at": utc(row.created_at),
                                           "expires_at": expires})


def _dataset_public(row: DatasetRow) -> wire.DatasetPublic:
    return wire.DatasetPublic.model_validate({**row.model_dump(exclude={"updated_at"}),
                                              "created_at": utc(row.created_at)})


def _approval_public(row: ApprovalRow) -> wire.ApprovalPublic:
    return wire.ApprovalPublic.model_validate({**row.model_dump(), "created_at": utc(row.created_at)})


def _job_public(row: JobRow, approvals: list[ApprovalRow]) -> wire.JobPublic:
    data = row.model_dump()
    data.update(created_at=utc(row.created_at), updated_at=utc(row.updated_at),
                approvals=[_approval_public(a) for a in approvals])
    return wire.JobPublic.model_validate(data)


class _Catalog:
    def __init__(self, session: Session) -> None:
        self._s = session

    def upsert_party(self, party: wire.PartyCreate, now: datetime) -> tuple[wire.PartyPublic, bool]:
        row = self._s.exec(select(PartyRow).where(PartyRow.name == party.name)).first()
        created = row is None
        values = {**party.model_dump(mode="json"), "updated_at": now}
        if row is None:
            row = PartyRow.model_validate({**values, "created_at": now})
        row.sqlmodel_update(values)
        self._s.add(row)
        self._s.flush()
        _touch(self._s, CATALOG)
        return _party_public(row), created

    def get_party(self, name: str) -> wire.PartyPublic:
        row = self._s.exec(select(PartyRow).where(PartyRow.name == name)).first()
        if row is None:
            raise NotFound(f"party {name!r} is not registered")
        return _party_public(row)

    def list_parties(self) -> list[wire.PartyPublic]:
        return [_party_public(r) for r in self._s.exec(select(PartyRow).order_by(col(PartyRow.id)))]

    def create_user(self, user: wire.UserCreate, token_hash: str, now: datetime) -> wire.UserPublic:
        if self._s.exec(select(UserRow.id).where(UserRow.name == user.name)).first() is not None:
            raise Conflict(f"user {user.name!r} already exists", field="body.name")
        row = UserRow(**user.model_dump(mode="json", exclude={"expires_in_days"}), token_hash=token_hash,
                      created_at=now, expires_at=token_expiry(user, now))
        self._s.add(row)
        self._s.flush()
        return _user_public(row)

    def get_user(self, name: str) -> wire.UserPublic:
        row = self._s.exec(select(UserRow).where(UserRow.name == name)).first()
        if row is None:
            raise NotFound(f"user {name!r} does not exist")
        return _user_public(row)

    def user_by_token_hash(self, token_hash: str) -> wire.UserPublic | None:
        row = self._s.exec(select(UserRow).where(UserRow.token_hash == token_hash)).first()
        return _user_public(row) if row else None

    def list_users(self, party: str | None = None) -> list[wire.UserPublic]:
        query = select(UserRow).order_by(col(UserRow.id))
        if party is not None:
            query = query.where(UserRow.party == party)
        return [_user_public(r) for r in self._s.exec(query)]

    def expire_user(self, name: str, at: datetime) -> wire.UserPublic:
        row = self._s.exec(select(UserRow).where(UserRow.name == name)).first()
        if row is None:
            raise NotFound(f"user {name!r} does not exist", field="path.name")
        if row.expires_at is None or utc(row.expires_at) > at:
            row.expires_at = at
            self._s.add(row)
            self._s.flush()
        return _user_public(row)

    def upsert_dataset(
        self, party: str, dataset: wire.DatasetRegister, schema_digest: str, now: datetime
    ) -> tuple[wire.DatasetPublic, bool]:
        query = select(DatasetRow).where(DatasetRow.party == party, DatasetRow.name == dataset.name)
        row = self._s.exec(query).first()
        created = row is None
        row = row or DatasetRow(party=party, name=dataset.name, created_at=now, row_count=0, fields=[],
                                schema_digest="")
        row.sqlmodel_update({**dataset.model_dump(mode="json"), "schema_digest": schema_digest, "updated_at": now})
        self._s.add(row)
        self._s.flush()
        _touch(self._s, CATALOG)
        return _dataset_public(row), created

    def get_dataset(self, dataset_id: int) -> wire.DatasetPublic:
        row = self._s.get(DatasetRow, dataset_id) if _valid_id(dataset_id) else None
        if row is None:
            raise NotFound(f"dataset {dataset_id} does not exist")
        return _dataset_public(row)

    def list_datasets(self, party: str | None = None) -> list[wire.DatasetPublic]:
        query = select(DatasetRow).order_by(col(DatasetRow.id))
        if party is not None:
            query = query.where(DatasetRow.party == party)
        return [_dataset_public(r) for r in self._s.exec(query)]


class _Jobs:
    def __init__(self, session: Session) -> None:
        self._s = session
        self._created: dict[int, JobRow] = {}
        """Rows of the jobs this transaction created, which no other transaction sees before it commits: held
        so that reading one again costs no SELECT (the session maps rows only weakly)."""
        self._unapproved: set[int] = set()
        """Jobs this transaction created and has not approved: they have no approvals to read."""

    def create_job(
        self, job: wire.JobCreate, *, created_by: str, parties: list[str], decision: wire.Decision, now: datetime
    ) -> wire.JobPublic:
        spec = job.model_dump(mode="json")
        row = JobRow(**spec, status=wire.JobStatus.DRAFT.value, policy_version=decision.policy_version,
                     decision=decision.model_dump(mode="json"), required_approvals=[], outputs={},
                     created_by=created_by, created_at=now, updated_at=now)
        self._s.add(row)
        self._s.flush()
        assert row.id is not None
        self._created[row.id] = row
        self._unapproved.add(row.id)
        _insert_rows(self._s, JobPartyRow, [{"job_id": row.id, "party": p} for p in sorted(set(parties))])
        _touch(self._s, row.status)
        return _job_public(row, [])

    def _row(self, job_id: int) -> JobRow:
        row = self._s.get(JobRow, job_id) if _valid_id(job_id) else None
        if row is None:
            raise NotFound(f"job {job_id} does not exist")
        return row

    def _changing(self, job_id: int) -> JobRow:
        """The row of a job about to change (its approvals or results): its status's listings change."""
        row = self._row(job_id)
        _touch(self._s, row.status)
        return row

    def _approvals(self, job_ids: list[int]) -> dict[int, list[ApprovalRow]]:
        grouped: dict[int, list[ApprovalRow]] = {jid: [] for jid in job_ids}
        stored = [jid for jid in job_ids if jid not in self._unapproved]
        if not stored:
            return grouped
        query = select(ApprovalRow).where(col(ApprovalRow.job_id).in_(stored)).order_by(col(ApprovalRow.id))
        for a in self._s.exec(query):
            grouped[a.job_id].append(a)
        return grouped

    def update_job(self, job_id: int, update: JobUpdate, now: datetime) -> wire.JobPublic:
        row = self._row(job_id)
        before = row.status
        row.sqlmodel_update({**update.changes(), "updated_at": now})
        _touch(self._s, before, row.status)
        self._s.add(row)
        self._s.flush()
        return self.get_job(job_id)

    def get_job(self, job_id: int) -> wire.JobPublic:
        row = self._row(job_id)
        return _job_public(row, self._approvals([job_id])[job_id])

    def job_parties(self, job_id: int) -> list[str]:
        query = select(JobPartyRow.party).where(JobPartyRow.job_id == job_id).order_by(col(JobPartyRow.party))
        parties = list(self._s.exec(query)) if _valid_id(job_id) else []
        if not parties:  # a party row names an existing job (foreign key): only without one is the job looked up
            self._row(job_id)
        return parties

    def list_jobs(self, *, party: str | None = None, status: wire.JobStatus | None = None) -> list[wire.JobPublic]:
        query = select(JobRow).order_by(col(JobRow.id))
        if party is not None:
            query = query.join(JobPartyRow, col(JobPartyRow.job_id) == col(JobRow.id)).where(JobPartyRow.party == party)
        if status is not None:
            query = query.where(JobRow.status == status.value)
        rows = list(self._s.exec(query))
        approvals = self._approvals([r.id for r in rows if r.id is not None])
        return [_job_public(r, approvals[r.id]) for r in rows if r.id is not None]

    def add_approval(self, job_id: int, approval: wire.ApprovalPublic) -> None:
        self._changing(job_id)
        self._unapproved.discard(job_id)
        query = select(ApprovalRow.id).where(ApprovalRow.job_id == job_id, ApprovalRow.approver == approval.approver)
        if self._s.exec(query).first() is not None:
            raise Conflict(f"job {job_id} is already approved by {approval.approver}", field="body.approver")
        self._s.add(ApprovalRow(job_id=job_id, **approval.model_dump()))
        self._s.flush()

    def record_result(self, job_id: int, party: str, report: wire.JobResultReport, now: datetime) -> None:
        self._changing(job_id)
        query = select(JobResultRow.id).where(JobResultRow.job_id == job_id, JobResultRow.party == party)
        if self._s.exec(query).first() is not None:
            raise Conflict(f"party {party!r} already reported a result for job {job_id}")
        self._s.add(JobResultRow(job_id=job_id, party=party, report=report.model_dump(mode="json"), created_at=now))
        self._s.flush()

    def results(self, job_id: int) -> dict[str, wire.JobResultReport]:
        query = select(JobResultRow).where(JobResultRow.job_id == job_id).order_by(col(JobResultRow.party))
        return {r.party: wire.JobResultReport.model_validate(r.report) for r in self._s.exec(query)}

    def clear_results(self, job_id: int) -> None:
        self._changing(job_id)
        self._s.execute(delete(JobResultRow).where(col(JobResultRow.job_id) == job_id))
        self._s.flush()

    def clear_approvals(self, job_id: int) -> None:
        self._changing(job_id)
        self._s.execute(delete(ApprovalRow).where(col(ApprovalRow.job_id) == job_id))
        self._s.flush()


def _charge_public(row: BudgetChargeRow) -> BudgetCharge:
    refunded = utc(row.refunded_at) if row.refunded_at else None
    return BudgetCharge.model_validate({**row.model_dump(exclude={"id"}), "charged_at": utc(row.charged_at),
                                        "refunded_at": refunded})


class _Budgets:
    def __init__(self, session: Session) -> None:
        self._s = session

    def _pair_spent(self, pair: tuple[int, int]) -> float:
        query = select(func.coalesce(func.sum(BudgetChargeRow.epsilon), 0.0)).where(
            BudgetChargeRow.bank_dataset_id == pair[0], BudgetChargeRow.telco_dataset_id == pair[1],
            col(BudgetChargeRow.refunded_at).is_(None))
        return round(float(self._s.exec(query).one()), BUDGET_DIGITS)

    def charge(self, charge: BudgetCharge, limit: float) -> float:
        if self._s.get_bind().dialect.name == "postgresql":
            self._s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": BUDGET_LOCK_KEY})
        existing = self._s.exec(select(BudgetChargeRow).where(BudgetChargeRow.job_id == charge.job_id)).first()
        total = charged_total(charge, self._pair_spent(charge.pair), limit,
                              outstanding=existing is not None and existing.refunded_at is None)
        row = existing if existing is not None else BudgetChargeRow(**charge.model_dump())
        row.sqlmodel_update(charge.model_dump())
        self._s.add(row)
        self._s.flush()
        return total

    def refund(self, job_id: int, now: datetime) -> BudgetCharge | None:
        query = select(BudgetChargeRow).where(BudgetChargeRow.job_id == job_id,
                                              col(BudgetChargeRow.refunded_at).is_(None))
        row = self._s.exec(query).first()
        if row is None:
            return None
        row.refunded_at = now
        self._s.add(row)
        self._s.flush()
        return _charge_public(row)

    def spent(self) -> dict[tuple[int, int], float]:
        pair = (col(BudgetChargeRow.bank_dataset_id), col(BudgetChargeRow.telco_dataset_id))
        query = (select(*pair, func.sum(BudgetChargeRow.epsilon)).where(col(BudgetChargeRow.refunded_at).is_(None))
                 .group_by(*pair).order_by(*pair))
        return {(b, t): round(float(total), BUDGET_DIGITS) for b, t, total in self._s.exec(query)}

    def charges(self) -> list[BudgetCharge]:
        rows = self._s.exec(select(BudgetChargeRow).order_by(col(BudgetChargeRow.job_id)))
        return [_charge_public(r) for r in rows]


_RECORD_COLUMNS = (col(AuditEventRow.seq), col(AuditEventRow.ts), col(AuditEventRow.body),
                   col(AuditEventRow.prev_hash), col(AuditEventRow.hash))
"""Audit records are read as plain column tuples: no ORM objects for rows that are never changed."""


def _record(row: Any) -> ChainRecord:
    seq, ts, body, prev_hash, hash_ = row
    return ChainRecord(seq=seq, ts=ts, body=json.loads(body), prev_hash=prev_hash, hash=hash_)


class _Audit:
    """The chain inside one transaction.

    The first append takes the chain's lock and reads the head (on PostgreSQL in one round trip,
    ``tandem_audit_locked_head``; on SQLite the transaction already holds the writer lock); the lock is
    held until the transaction ends, so what the transaction reads after its first append is what no
    other audited write can change before it commits. The records are chained at once, but inserted
    together in one statement when the transaction ends (``insert_queued``), or before the transaction
    reads the log, so the lock is held for few round trips.
    """

    def __init__(self, session: Session) -> None:
        self._s = session
        self._queued: list[ChainRecord] = []
        self.appended: ChainRecord | None = None
        """The last record this transaction appended."""

    def append(self, body: dict[str, Any], ts: str) -> ChainRecord:
        head = self.appended  # after a first append this transaction holds the chain's lock: it is the head
        if head is None:
            head = self._locked_head()
        record = next_record(head, ts, json.loads(canonical_json(body)))
        self._queued.append(record)
        self.appended = record
        return record

    def insert_queued(self) -> None:
        """Insert the records appended since the last call, in one statement."""
        if self._queued:
            rows = [{"seq": r.seq, "ts": r.ts, "body": canonical_json(r.body).decode(), "prev_hash": r.prev_hash,
                     "hash": r.hash} for r in self._queued]
            _insert_rows(self._s, AuditEventRow, rows)
            self._queued.clear()

    def head(self) -> ChainRecord | None:
        self.insert_queued()
        return self._stored_head()

    def _locked_head(self) -> ChainRecord | None:
        """Take the chain's lock (PostgreSQL: held until the transaction ends), then read the head."""
        if self._s.get_bind().dialect.name != "postgresql":
            return self._stored_head()  # SQLite: this transaction already holds the writer lock
        row = self._s.execute(text("SELECT * FROM tandem_audit_locked_head()")).first()
        return _record(row) if row else None

    def _stored_head(self) -> ChainRecord | None:
        row = self._s.exec(select(*_RECORD_COLUMNS).order_by(col(AuditEventRow.seq).desc()).limit(1)).first()
        return _record(row) if row else None

    def events(self, after_seq: int = -1, limit: int = 100) -> list[ChainRecord]:
        self.insert_queued()
        query = (select(*_RECORD_COLUMNS).where(AuditEventRow.seq > max(after_seq, -1))
                 .order_by(col(AuditEventRow.seq)).limit(max(limit, 0)))
        return [_record(r) for r in self._s.exec(query)]

    def containing(self, fragments: Sequence[str], through_seq: int) -> list[ChainRecord]:
        self.insert_queued()
        query = select(*_RECORD_COLUMNS).where(AuditEventRow.seq <= through_seq)
        for fragment in fragments:
            query = query.where(col(AuditEventRow.body).contains(fragment, autoescape=True))
        return [_record(r) for r in self._s.exec(query.order_by(col(AuditEventRow.seq)))]


_ROWS_PER_INSERT = 1000
"""Rows per multi-row INSERT (PostgreSQL takes at most 65,535 parameters in one statement)."""


def _insert_rows(session: Session, model: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (complete: no generated keys) as one multi-row INSERT per ``_ROWS_PER_INSERT`` rows.

    No ORM objects, and one statement rather than an executemany: psycopg runs an executemany in
    pipeline mode, which costs more CPU than one statement for the few rows a transaction inserts.
    """
    table = model.__table__  # type: ignore[attr-defined]
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        session.execute(insert(table).values(rows[start:start + _ROWS_PER_INSERT]))


_SESSION_COLUMNS = (col(WebSessionRow.key), col(WebSessionRow.token_hash), col(WebSessionRow.user),
                    col(WebSessionRow.started), col(WebSessionRow.seen))


def _web_session(row: Any) -> WebSession:
    key, token_hash, user, started, seen = row
    return WebSession(key=key, token_hash=token_hash, user=user, started=utc(started), seen=utc(seen))


class _Sessions:
    """Browser sessions, read and written as plain columns (a page view reads one row by its primary key).

    No write here calls ``_touch``: the write versions say when an answer cached by
    ``coordinator.answer_cache`` (jobs by status, the catalog) may be stale, and no such answer is read
    from this table. Counting a login, a logout or a page view's ``seen`` would only make every node's
    next poll re-read the store for nothing.
    """

    def __init__(self, session: Session) -> None:
        self._s = session

    def insert(self, session: WebSession) -> None:
        _insert_rows(self._s, WebSessionRow, [session.model_dump()])

    def get(self, key: str) -> WebSession | None:
        row = self._s.execute(sa_select(*_SESSION_COLUMNS).where(col(WebSessionRow.key) == key)).first()
        return _web_session(row) if row else None

    def set_seen(self, key: str, seen: datetime) -> None:
        self._s.execute(update(WebSessionRow).where(col(WebSessionRow.key) == key).values(seen=seen))

    def delete(self, key: str) -> WebSession | None:
        statement = delete(WebSessionRow).where(col(WebSessionRow.key) == key).returning(*_SESSION_COLUMNS)
        row = self._s.execute(statement).first()
        return _web_session(row) if row else None

    def prune(self, *, seen_by: datetime, started_by: datetime, keep: int) -> int:
        stale = or_(col(WebSessionRow.seen) <= seen_by, col(WebSessionRow.started) <= started_by)
        removed = self._deleted(stale)
        over = self._s.exec(select(func.count()).select_from(WebSessionRow)).one() - max(keep, 0)
        if over > 0:
            oldest = select(WebSessionRow.key).order_by(col(WebSessionRow.seen), col(WebSessionRow.key)).limit(over)
            removed += self._deleted(col(WebSessionRow.key).in_(oldest))
        return removed

    def _deleted(self, where: Any) -> int:
        result: Any = self._s.execute(delete(WebSessionRow).where(where))
        return int(result.rowcount)


def _touch(session: Session, *keys: str) -> None:
    """Note what this transaction changed (``SqlStore.versions`` counts it once the transaction commits)."""
    session.info.setdefault(_TOUCHED, set()).update(str(getattr(k, "value", k)) for k in keys)


def _transaction(session: Session, audit: _Audit | None = None) -> TransactionStores:
    return TransactionStores(_Catalog(session), _Jobs(session), _Budgets(session), audit or _Audit(session),
                             _Sessions(session))


def _read_committed(engine: Engine) -> bool:
    """Whether ``engine`` is PostgreSQL whose transactions are READ COMMITTED by default (connects once to ask)."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        return conn.default_isolation_level == "READ COMMITTED"


AuditCommitHook = Callable[[ChainRecord], None]
"""Called with the new chain head after a write transaction that appended audit events has committed."""


class SqlStore:
    """The store contract over a SQLAlchemy engine.

    Args:
        engine: from ``make_engine``.
        on_audit_commit: told the new head after each committed write that appended audit events (the
            coordinator signs and stores it outside the database). A failure there is logged, not raised:
            the transaction has already committed.
    """

    def __init__(self, engine: Engine, *, on_audit_commit: AuditCommitHook | None = None) -> None:
        self.engine = engine
        self._reader = engine.execution_options(tandem_read=True)
        if _read_committed(engine):
            # READ COMMITTED gives each statement its own snapshot, inside a transaction or not: a read-only
            # transaction there is only a BEGIN and a COMMIT round trip more (the driver's autocommit
            # switch is client-side: no statement is sent to set it)
            self._reader = self._reader.execution_options(isolation_level="AUTOCOMMIT")
        self._lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        self._on_audit_commit = on_audit_commit
        self._versions: dict[str, int] = {}
        self._versions_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, *, on_audit_commit: AuditCommitHook | None = None) -> SqlStore:
        """Create the engine, the tables (if missing) and the store."""
        engine = make_engine(url)
        init_schema(engine)
        return cls(engine, on_audit_commit=on_audit_commit)

    @contextmanager
    def write(self) -> Iterator[TransactionStores]:
        """One database transaction; commits on normal exit, rolls back if the block raises."""
        with self._lock or nullcontext(), Session(self.engine, expire_on_commit=False) as session:
            audit = _Audit(session)
            with session.begin():
                yield _transaction(session, audit)
                audit.insert_queued()
            self._count(session.info.get(_TOUCHED, ()))  # committed: readers of these versions re-read
        if audit.appended is not None and self._on_audit_commit is not None:  # committed; outside the writer lock
            self._tell_head(audit.appended)

    def _count(self, touched: Iterable[str]) -> None:
        with self._versions_lock:
            for key in touched:
                self._versions[key] = self._versions.get(key, 0) + 1

    def versions(self, *keys: str) -> tuple[int, ...]:
        """How many committed writes of this process changed each of ``keys`` (a job status, or ``CATALOG``).

        Read a version before reading the data it covers: an answer cached under that version is then
        never newer-keyed than its data (a write commits, then counts). Writes by other processes on the
        same database are not counted; a cache keyed on versions also needs a time limit for those.
        """
        return tuple(self._versions.get(k, 0) for k in keys)

    def _tell_head(self, head: ChainRecord) -> None:
        assert self._on_audit_commit is not None
        try:
            self._on_audit_commit(head)
        except OSError as exc:
            logger.error("audit head seq %d committed but not stored outside the database: %s", head.seq, exc)

    @contextmanager
    def read(self) -> Iterator[TransactionStores]:
        """A read transaction that does not take the writer lock: for reading only.

        On PostgreSQL at READ COMMITTED (the server's default isolation level), its statements run in
        autocommit mode, without BEGIN and COMMIT: each has its own snapshot, as it would inside a
        transaction at that level. At a stricter default level the reads share one transaction's snapshot.
        """
        with Session(self._reader, expire_on_commit=False) as session, session.begin():
            yield _transaction(session)

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.engine.dispose()
