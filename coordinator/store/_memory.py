"""In-memory store: the reference implementation of the store contract, for tests and tooling.

A write transaction takes one re-entrant lock, snapshots the (shallow-copied, immutable-valued)
tables, and restores the snapshot if the block raises.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from coordinator.errors import Conflict, NotFound
from coordinator.policy import BUDGET_DIGITS
from coordinator.store._interface import (
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

__all__ = ["MemoryStore"]


@dataclass
class _Tables:
    parties: dict[str, wire.PartyPublic] = field(default_factory=dict)
    users: dict[str, tuple[wire.UserPublic, str]] = field(default_factory=dict)
    datasets: dict[int, wire.DatasetPublic] = field(default_factory=dict)
    jobs: dict[int, wire.JobPublic] = field(default_factory=dict)
    job_parties: dict[int, tuple[str, ...]] = field(default_factory=dict)
    approvals: dict[int, tuple[wire.ApprovalPublic, ...]] = field(default_factory=dict)
    results: dict[tuple[int, str], wire.JobResultReport] = field(default_factory=dict)
    budget: dict[int, BudgetCharge] = field(default_factory=dict)
    audit: list[ChainRecord] = field(default_factory=list)
    sessions: dict[str, WebSession] = field(default_factory=dict)
    next_id: dict[str, int] = field(default_factory=dict)

    def new_id(self, table: str) -> int:
        self.next_id[table] = self.next_id.get(table, 0) + 1
        return self.next_id[table]

    def snapshot(self) -> _Tables:
        return _Tables(**{name: copy.copy(value) for name, value in vars(self).items()})


class _Catalog:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def upsert_party(self, party: wire.PartyCreate, now: datetime) -> tuple[wire.PartyPublic, bool]:
        old = self._t.parties.get(party.name)
        pid = old.id if old else self._t.new_id("party")
        created_at = old.created_at if old else now
        new = wire.PartyPublic(id=pid, created_at=created_at, **party.model_dump())
        self._t.parties[party.name] = new
        return new, old is None

    def get_party(self, name: str) -> wire.PartyPublic:
        try:
            return self._t.parties[name]
        except KeyError:
            raise NotFound(f"party {name!r} is not registered") from None

    def list_parties(self) -> list[wire.PartyPublic]:
        return sorted(self._t.parties.values(), key=lambda p: p.id)

    def create_user(self, user: wire.UserCreate, token_hash: str, now: datetime) -> wire.UserPublic:
        if user.name in self._t.users:
            raise Conflict(f"user {user.name!r} already exists", field="body.name")
        public = wire.UserPublic(id=self._t.new_id("user"), created_at=now, expires_at=token_expiry(user, now),
                                 **user.model_dump(exclude={"expires_in_days"}))
        self._t.users[user.name] = (public, token_hash)
        return public

    def get_user(self, name: str) -> wire.UserPublic:
        try:
            return self._t.users[name][0]
        except KeyError:
            raise NotFound(f"user {name!r} does not exist") from None

    def user_by_token_hash(self, token_hash: str) -> wire.UserPublic | None:
        return next((u for u, h in self._t.users.values() if h == token_hash), None)

    def list_users(self, party: str | None = None) -> list[wire.UserPublic]:
        users = sorted((u for u, _ in self._t.users.values()), key=lambda u: u.id)
        return [u for u in users if party is None or u.party == party]

    def expire_user(self, name: str, at: datetime) -> wire.UserPublic:
        if name not in self._t.users:
            raise NotFound(f"user {name!r} does not exist", field="path.name")
        user, token_hash = self._t.users[name]
        if user.expires_at is None or user.expires_at > at:
            user = user.model_copy(update={"expires_at": at})
            self._t.users[name] = (user, token_hash)
        return user

    def upsert_dataset(
        self, party: str, dataset: wire.DatasetRegister, schema_digest: str, now: datetime
    ) -> tuple[wire.DatasetPublic, bool]:
        old = next((d for d in self._t.datasets.values() if d.party == party and d.name == dataset.name), None)
        did = old.id if old else self._t.new_id("dataset")
        new = wire.DatasetPublic(id=did, party=party, schema_digest=schema_digest,
                                 created_at=old.created_at if old else now, **dataset.model_dump())
        self._t.datasets[did] = new
        return new, old is None

    def get_dataset(self, dataset_id: int) -> wire.DatasetPublic:
        try:
            return self._t.datasets[dataset_id]
        except KeyError:
            raise NotFound(f"dataset {dataset_id} does not exist") from None

    def list_datasets(self, party: str | None = None) -> list[wire.DatasetPublic]:
        return [d for _, d in sorted(self._t.datasets.items()) if party is None or d.party == party]


class _Jobs:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def create_job(
        self, job: wire.JobCreate, *, created_by: str, parties: list[str], decision: wire.Decision, now: datetime
    ) -> wire.JobPublic:
        jid = self._t.new_id("job")
        self._t.jobs[jid] = wire.JobPublic(
            id=jid, kind=job.kind, purpose=job.purpose, title=job.title, inputs=job.inputs, params=job.params,
            status=wire.JobStatus.DRAFT, status_detail="", stage="", progress=0.0, digest="",
            policy_version=decision.policy_version, decision=decision, required_approvals=[], approvals=[],
            outputs={}, created_by=created_by, created_at=now, updated_at=now,
        )
        self._t.job_parties[jid] = tuple(sorted(set(parties)))
        return self.get_job(jid)

    def update_job(self, job_id: int, update: JobUpdate, now: datetime) -> wire.JobPublic:
        old = self._stored(job_id)
        changed = {**old.model_dump(), **update.changes(), "updated_at": now}
        self._t.jobs[job_id] = wire.JobPublic.model_validate(changed)
        return self.get_job(job_id)

    def get_job(self, job_id: int) -> wire.JobPublic:
        return self._stored(job_id).model_copy(update={"approvals": list(self._t.approvals.get(job_id, ()))})

    def _stored(self, job_id: int) -> wire.JobPublic:
        try:
            return self._t.jobs[job_id]
        except KeyError:
            raise NotFound(f"job {job_id} does not exist") from None

    def job_parties(self, job_id: int) -> list[str]:
        self._stored(job_id)
        return list(self._t.job_parties[job_id])

    def list_jobs(self, *, party: str | None = None, status: wire.JobStatus | None = None) -> list[wire.JobPublic]:
        return [
            self.get_job(jid)
            for jid, job in sorted(self._t.jobs.items())
            if (party is None or party in self._t.job_parties[jid]) and (status is None or job.status == status)
        ]

    def add_approval(self, job_id: int, approval: wire.ApprovalPublic) -> None:
        self._stored(job_id)
        existing = self._t.approvals.get(job_id, ())
        if any(a.approver == approval.approver for a in existing):
            raise Conflict(f"job {job_id} is already approved by {approval.approver}", field="body.approver")
        self._t.approvals[job_id] = (*existing, approval)

    def record_result(self, job_id: int, party: str, report: wire.JobResultReport, now: datetime) -> None:
        self._stored(job_id)
        if (job_id, party) in self._t.results:
            raise Conflict(f"party {party!r} already reported a result for job {job_id}")
        self._t.results[(job_id, party)] = report

    def results(self, job_id: int) -> dict[str, wire.JobResultReport]:
        return {p: r for (jid, p), r in sorted(self._t.results.items()) if jid == job_id}

    def clear_results(self, job_id: int) -> None:
        self._stored(job_id)
        self._t.results = {key: r for key, r in self._t.results.items() if key[0] != job_id}

    def clear_approvals(self, job_id: int) -> None:
        self._stored(job_id)
        self._t.approvals.pop(job_id, None)


class _Budgets:
    """Writes already hold the store's one lock, so check-then-insert is atomic."""

    def __init__(self, t: _Tables) -> None:
        self._t = t

    def charge(self, charge: BudgetCharge, limit: float) -> float:
        existing = self._t.budget.get(charge.job_id)
        total = charged_total(charge, self.spent().get(charge.pair, 0.0), limit,
                              outstanding=existing is not None and existing.refunded_at is None)
        self._t.budget[charge.job_id] = charge
        return total

    def refund(self, job_id: int, now: datetime) -> BudgetCharge | None:
        charge = self._t.budget.get(job_id)
        if charge is None or charge.refunded_at is not None:
            return None
        self._t.budget[job_id] = charge.model_copy(update={"refunded_at": now})
        return self._t.budget[job_id]

    def spent(self) -> dict[tuple[int, int], float]:
        totals: dict[tuple[int, int], float] = {}
        for c in self._t.budget.values():
            if c.refunded_at is None:
                totals[c.pair] = totals.get(c.pair, 0.0) + c.epsilon
        return {pair: round(total, BUDGET_DIGITS) for pair, total in sorted(totals.items())}

    def charges(self) -> list[BudgetCharge]:
        return [c for _, c in sorted(self._t.budget.items())]


class _Audit:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def append(self, body: dict[str, Any], ts: str) -> ChainRecord:
        record = next_record(self.head(), ts, copy.deepcopy(body))
        self._t.audit.append(record)
        return record

    def head(self) -> ChainRecord | None:
        return self._t.audit[-1] if self._t.audit else None

    def events(self, after_seq: int = -1, limit: int = 100) -> list[ChainRecord]:
        start = max(after_seq + 1, 0)
        return self._t.audit[start : start + max(limit, 0)]

    def containing(self, fragments: Sequence[str], through_seq: int) -> list[ChainRecord]:
        found = []
        for rec in self._t.audit[: max(through_seq + 1, 0)]:
            text = canonical_json(rec.body).decode("utf-8")
            if all(f in text for f in fragments):
                found.append(rec)
        return found


class _Sessions:
    def __init__(self, t: _Tables) -> None:
        self._t = t

    def insert(self, session: WebSession) -> None:
        if session.key in self._t.sessions:
            raise Conflict("a web session with this key already exists")
        self._t.sessions[session.key] = session

    def get(self, key: str) -> WebSession | None:
        return self._t.sessions.get(key)

    def set_seen(self, key: str, seen: datetime) -> None:
        session = self._t.sessions.get(key)
        if session is not None:
            self._t.sessions[key] = session.model_copy(update={"seen": seen})

    def delete(self, key: str) -> WebSession | None:
        return self._t.sessions.pop(key, None)

    def prune(self, *, seen_by: datetime, started_by: datetime, keep: int) -> int:
        before = len(self._t.sessions)
        live = sorted((s for s in self._t.sessions.values() if s.seen > seen_by and s.started > started_by),
                      key=lambda s: (s.seen, s.key))
        self._t.sessions = {s.key: s for s in live[max(len(live) - max(keep, 0), 0):]}
        return before - len(self._t.sessions)


def _transaction(t: _Tables) -> TransactionStores:
    return TransactionStores(_Catalog(t), _Jobs(t), _Budgets(t), _Audit(t), _Sessions(t))


class MemoryStore:
    """Everything in process memory; lost on exit."""

    def __init__(self) -> None:
        self._tables = _Tables()
        self._lock = threading.RLock()

    @contextmanager
    def write(self) -> Iterator[TransactionStores]:
        """Serialised read-write transaction; restores the snapshot if the block raises."""
        with self._lock:
            working = self._tables.snapshot()
            yield _transaction(working)
            self._tables = working

    @contextmanager
    def read(self) -> Iterator[TransactionStores]:
        """Consistent read-only view."""
        with self._lock:
            yield _transaction(self._tables)

    def close(self) -> None:
        """Nothing to release."""
