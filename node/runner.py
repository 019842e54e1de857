"""The job runner: fetch approved work, check this party's own approval, dispatch to a protocol handler.

For each job the coordinator lists as approved or running for this node::

    succeeded here, or this attempt already finished/refused here?  -> skip
    not this party's job?                     -> skip
    this attempt started here and never ended -> result failed "interrupted: ..."
    own approval, the terms' parties or a required auditor approval do not verify
                                              -> progress failed "refused: ...", journal "refused"
    no handler registered for job.kind        -> progress "waiting: ..." (once), journal "waiting"
    handler(ctx) returns outputs              -> result succeeded (+ ledger head and totals)
    handler raises                            -> result failed with a reason, work directory removed

Protocol drivers register ``JobHandler``s per ``JobKind``; a handler gets a ``JobContext`` (the job,
settings, local datasets, peer clients, progress reporter, ledger and a scratch directory) and returns
the outputs meant for the coordinator (aggregates only). Reasons reported for unexpected exceptions
name the exception type and stage only: exception messages can quote row values, and those stay in
the node.

Attempts and signatures: an approval signs one attempt of a job (``job_terms`` includes ``attempt``), and
a node runs each signature at most once. A job the coordinator retried (``POST /jobs/{id}/retry``) comes
back with ``attempt`` one higher and runs only once this node's party has signed that attempt (a
training job then resumes from its checkpoints). A job this node noted succeeded never runs again; an
attempt older than one the node has seen is ignored; a run the node started and never finished (it
stopped mid-job) is reported failed instead of started again on the same signature. Every report names
its attempt, so the coordinator refuses a late report of an attempt it has retried. A final report the
coordinator could not take (down, restarting, 5xx) is sent again on the next poll; a state disk that cannot
be written fails the attempt before anything runs, and the runner keeps polling until it can.

Before running, the node also checks the parties the signed terms name (its inbox then accepts frames
for the job from the one counterparty only) and, where the terms or its own governance call for it, a
compliance officer's approval under an auditor key configured on the node (``node.approval``).
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from node.adapters import DataSource, open_source
from node.approval import ApprovalRefused, approver_id, signed_peer, verify_auditor_approval, verify_own_approval
from node.coordinator_client import CoordinatorClient, CoordinatorError
from node.governance import Governance, load_governance
from node.keys import NodeKeys
from node.ledger import EgressLedger, LedgerUnwritable
from node.node_state import JobJournal, LocalDataset, LocalDatasets
from node.peer import PeerClient, PeerInbox
from node.settings import NodeSettings
from protocols.wire.control import (
    MAX_LEDGER_ENTRIES,
    JobInput,
    JobKind,
    JobProgress,
    JobPublic,
    JobResultReport,
    JobStatus,
    LedgerEntry,
)
from protocols.wire.errors import ConfigError, ProtocolError
from protocols.wire.filters import FilterSyntaxError, parse_filter

__all__ = ["FINAL_STATES", "JobContext", "JobEndedElsewhere", "JobFamily", "JobHandler", "JobOutcome", "JobRunner",
           "family_handlers", "ledger_receipts"]

logger = logging.getLogger(__name__)

FINAL_STATES = frozenset({"succeeded", "failed", "refused"})

_ENDED_ELSEWHERE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.REJECTED})


class JobEndedElsewhere(ProtocolError):
    """The coordinator ended the job (a party failed it, someone cancelled it) or retried it: this attempt is over."""

    status_hint = 409


_ONE_INPUT = "job {job} has {count} inputs on this node; a job takes exactly one"
"""``JobContext.own_input``'s default message (formatted with ``job`` and ``count``)."""


@dataclass
class JobContext:
    """What a protocol handler may use while running one job."""

    job: JobPublic
    settings: NodeSettings
    keys: NodeKeys
    ledger: EgressLedger
    datasets: LocalDatasets
    workdir: Path
    inbox: PeerInbox | None
    coordinator: CoordinatorClient
    peer_factory: Callable[[str], PeerClient] | None = None
    stage: str = "start"
    _peers: dict[str, PeerClient] = field(default_factory=dict)

    def progress(self, stage: str, fraction: float) -> None:
        """Report progress to the coordinator (``fraction`` in 0..1)."""
        self.stage = stage
        report = JobProgress(stage=stage, fraction=min(max(fraction, 0.0), 1.0), attempt=self.job.attempt)
        self.coordinator.report_progress(self.job.id, report)

    def dataset(self, dataset_id: int) -> LocalDataset:
        """Where a dataset this node registered lives (raises ``ConfigError`` if not ours)."""
        return self.datasets.get(dataset_id)

    def open_dataset(self, dataset_id: int) -> tuple[DataSource, Governance]:
        """Open one of this node's datasets with its governance rules. Close the source when done."""
        local = self.datasets.get(dataset_id)
        return open_source(local.source_uri), load_governance(local.governance_path)

    def own_inputs(self) -> list[JobInput]:
        """The job inputs whose datasets live on this node."""
        return [i for i in self.job.inputs if self.datasets.has(i.dataset_id)]

    def own_input(self, *, refusal: str = _ONE_INPUT, error: type[ProtocolError] = ConfigError) -> JobInput:
        """The one job input whose dataset lives on this node.

        Args:
            refusal: The error message when there is not exactly one, formatted with ``job`` (the job id)
                and ``count`` (how many inputs live here).
            error: The error type raised then.

        Raises:
            ProtocolError: ``error``, if the job has no input on this node, or more than one.
        """
        mine = self.own_inputs()
        if len(mine) != 1:
            raise error(refusal.format(job=self.job.id, count=len(mine)))
        return mine[0]

    def peer_party(self, *, error: type[ProtocolError] = ConfigError) -> str:
        """The party of the job's one input that does not live on this node, as the signed terms name it.

        The name comes from the terms this node signed (``JobInput.party``), never from a catalog lookup
        at run time, so a coordinator cannot point the node at another counterparty.

        Raises:
            ProtocolError: ``error``, if the job has no input of another party, or more than one, or the
                terms do not name its party.
        """
        if any(i.party is None for i in self.job.inputs):
            raise error(f"job {self.job.id}: the terms do not name the party of every input")
        others = [i for i in self.job.inputs if i.party != self.settings.party]
        if len(others) != 1 or self.datasets.has(others[0].dataset_id):
            raise error(f"job {self.job.id} must have exactly one input of the peer party")
        assert others[0].party is not None
        return others[0].party

    def check_current(self) -> None:
        """Ask the coordinator whether this attempt of the job still runs; raise if it is over.

        A long wait on the peer calls this every few seconds, so a job that the peer failed (bad parameters,
        a refused field), that someone cancelled or that was retried ends here too, not after a timeout.

        Raises:
            JobEndedElsewhere: the job is failed, cancelled or rejected at the coordinator, or runs a
                newer attempt.
            CoordinatorError: the coordinator could not answer (the caller decides whether to wait on).
        """
        remote = self.coordinator.job(self.job.id)
        if remote.status in _ENDED_ELSEWHERE:
            raise JobEndedElsewhere(f"the job was {remote.status} elsewhere: {remote.status_detail[:300]}")
        if remote.attempt != self.job.attempt:
            raise JobEndedElsewhere(f"the job was retried meanwhile (attempt {remote.attempt}); "
                                    f"attempt {self.job.attempt} stops here")

    def peer(self, party: str) -> PeerClient:
        """A pinned mutual-TLS client to ``party`` (created once per job)."""
        if self.peer_factory is None:
            raise ProtocolError("this runner has no data plane configured", status_hint=500)
        if party not in self._peers:
            client = self.peer_factory(party)
            client.bind_attempt(self.job.attempt)  # the peer refuses this attempt's frames once it is retried
            self._peers[party] = client
        return self._peers[party]

    def close(self) -> None:
        """Close peer clients opened for this job."""
        for client in self._peers.values():
            client.close()
        self._peers.clear()


JobHandler = Callable[[JobContext], dict[str, Any]]


class JobFamily(Protocol):
    """A family of jobs (PSI, scoring, training) as one node role runs them: a handler per job kind.

    A node process makes each family once; its handlers share the family's state (e.g. the PSI
    sender's registry, the running training jobs). ``build_cli(..., families=[...])`` registers them.
    """

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The family's handler per job kind."""
        ...


def family_handlers(families: Iterable[JobFamily]) -> dict[JobKind, JobHandler]:
    """Every handler of ``families``, by job kind.

    Raises:
        ValueError: If two families handle the same job kind.
    """
    merged: dict[JobKind, JobHandler] = {}
    for family in families:
        for kind, handler in family.handlers().items():
            if kind in merged:
                raise ValueError(f"two job families handle {kind}")
            merged[kind] = handler
    return merged


@dataclass(frozen=True)
class JobOutcome:
    """What the runner did with one job in a pass."""

    job_id: int
    state: str
    detail: str = ""


def ledger_receipts(ledger: EgressLedger, job_id: int) -> dict[str, Any]:
    """The ledger fields of a result report: head, totals and the first ``MAX_LEDGER_ENTRIES`` records of the job.

    Head, totals and records are read at one instant (``EgressLedger.receipts``): the node's server may
    still answer the peer for the job meanwhile, and the coordinator's cross-check needs the totals to
    cover exactly the job's records up to the head.
    """
    head, totals, records = ledger.receipts(job_id, limit=MAX_LEDGER_ENTRIES)
    entries = [LedgerEntry(seq=r.seq, kind=str(r.body["kind"])[:100], peer=str(r.body["peer"]),
                           bytes=int(r.body["bytes"]), digest=str(r.body["digest"])) for r in records]
    return {"ledger_head": head, "messages_sent": totals.messages, "bytes_sent": totals.bytes,
            "ledger_entries": entries}


class JobRunner:
    """Polls the coordinator and runs this node's part of approved jobs."""

    def __init__(
        self,
        settings: NodeSettings,
        keys: NodeKeys,
        coordinator: CoordinatorClient,
        ledger: EgressLedger,
        datasets: LocalDatasets,
        journal: JobJournal,
        *,
        handlers: Mapping[JobKind, JobHandler] | None = None,
        inbox: PeerInbox | None = None,
        peer_factory: Callable[[str], PeerClient] | None = None,
    ) -> None:
        self.settings, self.keys, self.coordinator = settings, keys, coordinator
        self.ledger, self.datasets, self.journal = ledger, datasets, journal
        self.inbox, self.peer_factory = inbox, peer_factory
        self._handlers: dict[JobKind, JobHandler] = dict(handlers or {})
        self._running: set[int] = set()  # jobs this process is running now
        self._unsent: dict[int, JobResultReport] = {}  # final reports the coordinator did not take yet

    def register(self, kind: JobKind, handler: JobHandler) -> None:
        """Run ``handler`` for jobs of ``kind``."""
        self._handlers[kind] = handler

    def pending_jobs(self) -> list[JobPublic]:
        """Approved and running jobs listed for this node, by id."""
        jobs: dict[int, JobPublic] = {}
        for status in (JobStatus.APPROVED, JobStatus.RUNNING):
            for job in self.coordinator.node_jobs(str(status)):
                jobs[job.id] = job
        return [jobs[k] for k in sorted(jobs)]

    def run_once(self) -> list[JobOutcome]:
        """Send final reports the coordinator missed, then process every pending job once; return what happened."""
        for job_id, report in list(self._unsent.items()):
            self._report_result(job_id, report)
        outcomes = []
        for job in self.pending_jobs():
            outcome = self.process(job)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def run_forever(self, stop: threading.Event, *, on_tick: Callable[[], None] | None = None) -> None:
        """Poll every ``settings.poll_interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                if on_tick is not None:
                    on_tick()
                self.run_once()
            except CoordinatorError as exc:
                logger.warning("coordinator unavailable: %s", exc)
            except (OSError, sqlite3.Error, LedgerUnwritable) as exc:  # a full state disk: poll on, serve once freed
                logger.error("cannot write this node's state (%s): %s", type(exc).__name__, exc)
            stop.wait(self.settings.poll_interval)

    def _concerns_us(self, job: JobPublic) -> bool:
        if approver_id(self.settings.party) in job.required_approvals:
            return True
        return any(self.datasets.has(i.dataset_id) for i in job.inputs)

    def process(self, job: JobPublic) -> JobOutcome | None:
        """Take one job through the steps in the module docstring."""
        note = self.journal.get(job.id)
        if note is not None and note.state == "succeeded":
            return None  # a job that succeeded here never runs again, whatever attempt is shown
        if note is not None and note.attempt < job.attempt:
            if note.state == "running" and job.id not in self._running:
                self._interrupted(job, note.attempt)  # that attempt's failure is reported (and audited) first
            note = None  # the coordinator retried the job: a new attempt, nothing done for it here yet
        if note is not None and note.attempt > job.attempt:
            return None  # an attempt older than one this node has seen: a replay
        if (note is not None and note.state in FINAL_STATES) or not self._concerns_us(job):
            return None
        if note is not None and note.state == "running":
            return None if job.id in self._running else self._interrupted(job)
        try:
            verify_own_approval(job, self.settings.party, self.keys.signing.public_hex)
            peer = signed_peer(job, self.settings.party, self.datasets.has)
            verify_auditor_approval(job, self._auditor_reasons(job), self.settings.auditor_keys)
        except ApprovalRefused as exc:
            return self._refuse(job, str(exc))
        handler = self._handlers.get(job.kind)
        if handler is None:
            return self._wait(job, note is not None and note.state == "waiting")
        return self._run(job, handler, peer)

    def _auditor_reasons(self, job: JobPublic) -> list[str]:
        """Why this node requires a compliance officer's approval of ``job`` (empty: it does not).

        Read from the signed terms and the node's own governance files, with the coordinator's list of
        approvers able only to add the requirement, never to waive it.

        Raises:
            ApprovalRefused: a governance file or filter of this node's input cannot be read (fail closed).
        """
        reasons = []
        if "auditor" in job.required_approvals:
            reasons.append("the policy lists the auditor among the approvers")
        if job.params.output_mode == "reveal":
            reasons.append("reveal mode")
        for inp in self.own_inputs_of(job):
            try:
                rules = load_governance(self.datasets.get(inp.dataset_id).governance_path).fields
                used = [*inp.key_fields, *inp.feature_fields, *inp.output_fields]
                used += [f for f in (inp.label_field, inp.consent_field) if f is not None]
                used += [p.field for p in parse_filter(inp.filter)] if inp.filter else []
            except (ConfigError, FilterSyntaxError) as exc:
                raise ApprovalRefused(f"refused: cannot check the levels of dataset {inp.dataset_id}: {exc}") from None
            for name in dict.fromkeys(used):
                rule = rules.get(name)
                if rule is not None and rule.security_level >= self.settings.auditor_level:
                    reasons.append(f"field {name} has security level {rule.security_level}")
        return reasons

    def own_inputs_of(self, job: JobPublic) -> list[JobInput]:
        """The inputs of ``job`` whose datasets are registered on this node."""
        return [i for i in job.inputs if self.datasets.has(i.dataset_id)]

    def _interrupted(self, job: JobPublic, attempt: int | None = None) -> JobOutcome:
        """Fail a run this node started and never finished (it stopped mid-job): ``attempt`` (the job's by default).

        It is not started again on the same signature, which authorised one run; a retry (with fresh
        approvals) resumes it, from checkpoints where the job kind keeps them. An attempt the coordinator
        has already retried is still reported: the coordinator refuses it but audits it with the ledger
        receipts, so the cross-check accounts for what that attempt sent.
        """
        attempt = job.attempt if attempt is None else attempt
        detail = (f"interrupted: this node stopped while running attempt {attempt}; an approval authorises "
                  "one run, so retry the job (POST /jobs/{id}/retry) and approve the new attempt")
        logger.warning("job %s: attempt %d was interrupted by a node restart", job.id, attempt)
        shutil.rmtree(self.settings.state_path / "jobs" / f"{job.id}.partial", ignore_errors=True)  # half-written
        self.journal.set(job.id, "failed", detail, attempt=attempt)
        self._report_result(job.id, JobResultReport(status="failed", detail=detail, attempt=attempt,
                                                    **ledger_receipts(self.ledger, job.id)))
        return JobOutcome(job.id, "failed", detail)

    def _refuse(self, job: JobPublic, detail: str) -> JobOutcome:
        logger.warning("job %s refused: %s", job.id, detail)
        self.journal.set(job.id, "refused", detail, attempt=job.attempt)
        self._report(job.id, JobProgress(stage="approval", fraction=0.0, status="failed", detail=detail,
                                         attempt=job.attempt))
        return JobOutcome(job.id, "refused", detail)

    def _wait(self, job: JobPublic, already_noted: bool) -> JobOutcome:
        detail = f"waiting: no protocol implementation for {job.kind} yet"
        if not already_noted:
            self.journal.set(job.id, "waiting", detail, attempt=job.attempt)
            self._report(job.id, JobProgress(stage="waiting", fraction=0.0, detail=detail, attempt=job.attempt))
        return JobOutcome(job.id, "waiting", detail)

    def _run(self, job: JobPublic, handler: JobHandler, peer: str | None) -> JobOutcome:
        jobs_dir = self.settings.state_path / "jobs"
        workdir, final_dir = jobs_dir / f"{job.id}.partial", jobs_dir / str(job.id)
        try:
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(parents=True, mode=0o700)
            self.journal.set(job.id, "running", attempt=job.attempt)
        except (OSError, sqlite3.Error) as exc:  # nothing ran: fail this attempt cleanly instead of retrying forever
            shutil.rmtree(workdir, ignore_errors=True)
            detail = (f"failed at stage 'start': this node cannot write its state directory ({type(exc).__name__}: "
                      f"{getattr(exc, 'strerror', None) or exc}); free space there and retry the job")
            logger.error("job %s: %s", job.id, detail)
            self._report_result(job.id, JobResultReport(status="failed", detail=detail, attempt=job.attempt,
                                                        **ledger_receipts(self.ledger, job.id)))
            return JobOutcome(job.id, "failed", detail)
        ctx = JobContext(job, self.settings, self.keys, self.ledger, self.datasets, workdir, self.inbox,
                         self.coordinator, self.peer_factory)
        if self.inbox is not None and peer is not None:  # a job with no counterparty receives no frames
            self.inbox.activate(job.id, peer=peer, attempt=job.attempt)
        logger.info("job %s (%s): running attempt %d", job.id, job.kind, job.attempt)
        self._running.add(job.id)
        try:
            outputs = handler(ctx)
        except Exception as exc:  # noqa: BLE001 - any handler failure fails the job, cleanly
            return self._fail(job, ctx, workdir, exc)
        finally:
            ctx.close()
            self._running.discard(job.id)
        shutil.rmtree(final_dir, ignore_errors=True)
        workdir.rename(final_dir)
        return self._succeed(job, outputs)

    def _succeed(self, job: JobPublic, outputs: dict[str, Any]) -> JobOutcome:
        report = JobResultReport(status="succeeded", outputs=outputs, attempt=job.attempt,
                                 **ledger_receipts(self.ledger, job.id))
        self.journal.set(job.id, "succeeded", attempt=job.attempt)
        self._report_result(job.id, report)
        logger.info("job %s: succeeded (%d messages, %d bytes sent)", job.id, report.messages_sent, report.bytes_sent)
        return JobOutcome(job.id, "succeeded")

    def _fail(self, job: JobPublic, ctx: JobContext, workdir: Path, exc: Exception) -> JobOutcome:
        shutil.rmtree(workdir, ignore_errors=True)
        if self.inbox is not None:
            self.inbox.deactivate(job.id)
        if isinstance(exc, ProtocolError):
            detail = f"failed at stage '{ctx.stage}': {exc}"
        else:
            detail = f"failed at stage '{ctx.stage}': {type(exc).__name__} in the {job.kind} handler (see node log)"
        logger.error("job %s failed at stage %s: %s", job.id, ctx.stage, type(exc).__name__)
        logger.debug("job %s failure", job.id, exc_info=exc)
        self.journal.set(job.id, "failed", detail, attempt=job.attempt)
        report = JobResultReport(status="failed", detail=detail[:2000], attempt=job.attempt,
                                 **ledger_receipts(self.ledger, job.id))
        self._report_result(job.id, report)
        return JobOutcome(job.id, "failed", detail)

    def _report(self, job_id: int, progress: JobProgress) -> None:
        try:
            self.coordinator.report_progress(job_id, progress)
        except CoordinatorError as exc:
            logger.warning("job %s: cannot report progress: %s", job_id, exc)

    def _report_result(self, job_id: int, report: JobResultReport) -> None:
        """Send a final report; one the coordinator could not take (down, 5xx) is sent again next poll."""
        try:
            self.coordinator.report_result(job_id, report)
        except CoordinatorError as exc:
            unavailable = exc.status_code >= 500
            logger.warning("job %s: cannot report result%s: %s", job_id, " (will resend)" if unavailable else "", exc)
            if unavailable:
                self._unsent[job_id] = report
                return
        self._unsent.pop(job_id, None)
