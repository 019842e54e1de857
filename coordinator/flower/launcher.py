"""The coordinator's training plane: its SuperLink and one Flower ServerApp run per approved training job.

Enabled by ``TANDEM_COORD_TRAINING_ENABLED=1``; ``tandem-coordinator serve`` then starts a
:class:`TrainingLauncher` beside the API. The launcher

1. starts the SuperLink (:class:`coordinator.flower.superlink.SuperLinkService`: TLS, SuperNode
   authentication, no runtime dependency installation, telemetry and update checks off) and
   registers each party's SuperNode public key under the party's name;
2. every ``check_interval`` seconds, starts a run of the Tandem Flower app for each approved or
   running ``train_risk`` / ``train_propensity`` job that has none for its current ``attempt`` yet,
   with the arbiter ``coordinator.flower.arbiters:lr_arbiter`` or ``:sb_arbiter``, the job's
   parameters and its ``attempt``; a retried job (a new attempt) gets a new run, and the previous one is
   stopped. Every round instruction carries the run's attempt, and a node refuses (410) a round of an
   attempt older than the one it runs, so a message of the previous run still queued at a SuperNode
   fails that run instead of binding the new attempt;
3. receives the ServerApp's end-of-run report on a loopback-only endpoint and audits it
   (``training.run_started`` / ``training.run_finished`` / ``training.run_failed``, with the round
   count, never a payload); a failed run fails the job with the ServerApp's reason (e.g. the round
   in which a node disappeared), unless the report is of an earlier run of the job (a retried
   attempt). Success of the job is still decided by the nodes' own results. The endpoint refuses
   (403) a report without the launcher's random report token, which only the SuperLink's environment
   (and so its ServerApp processes) holds, never a run config, so no other local process can fail a job;
4. fails the job of a run that ended without a report (its ServerApp died: the SuperLink shows the run
   finished, and no report arrived), with the SuperLink's status as the reason, audited as a failed run;
   the job would otherwise wait as ``running`` for ever;
5. stops a run whose job failed or was cancelled meanwhile (e.g. a node reported the failure while
   the ServerApp still waited for a round), audited as ``training.run_stopped``;
6. fails an attempt whose run an earlier coordinator process started (audited ``training.run_started``
   for that attempt, but not by this launcher): the run's ServerApp ended with that process's SuperLink,
   and a second run of the same attempt would send a Setup round to nodes that are rounds further on.
   Audited ``training.run_lost``; the nodes see the job failed and stop, and a retry starts a new attempt.

What the coordinator learns: what the arbiters learn (:mod:`coordinator.flower.arbiters`) — counts,
masked values, the held-out metrics — and the run's round count and outcome.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from coordinator.audit import log as audit_log
from coordinator.context import Context
from coordinator.job_states import FINAL, can_move
from coordinator.store import JobUpdate
from protocols.crypto.signing import job_digest
from protocols.wire.control import JobKind, JobPublic, JobStatus, terms_of
from protocols.wire.flower_round import HEADER_REPORT_TOKEN, REPORT_TOKEN_ENV

if TYPE_CHECKING:  # Flower is imported only once training is enabled
    from coordinator.flower.control_api import RunStatus

__all__ = ["TrainingLauncher", "TrainingSettings", "arbiter_config", "run_config"]

logger = logging.getLogger(__name__)

_ARBITERS = {JobKind.TRAIN_RISK: "coordinator.flower.arbiters:lr_arbiter",
             JobKind.TRAIN_PROPENSITY: "coordinator.flower.arbiters:sb_arbiter"}
ACTOR = "coordinator:training"


class TrainingSettings(BaseSettings):
    """``TANDEM_COORD_TRAINING_*``: where the SuperLink runs and how training jobs are configured.

    Attributes:
        enabled: start the SuperLink and launch training runs from ``serve``.
        superlink_port: HTTPS port of the SuperLink.
        superlink_host: the address the SuperLink listens on (127.0.0.1; ``0.0.0.0`` exposes its Fleet
            API to nodes on other hosts, its Control API stays token-only and its Runtime API loopback-only).
        state_dir: SuperLink logs and Flower home.
        tls_ca / tls_cert / tls_key: the SuperLink's TLS files (nodes verify it with ``tls_ca``);
            generated into ``state_dir/tls`` when unset.
        supernode_keys: party -> SuperNode public key file (OpenSSH), registered under the party name.
        poll_interval: SuperExec poll interval for the ServerApp runs (seconds).
        key_bits: Paillier modulus of LR arbiters and SecureBoost active parties.
        allow_insecure_test_key: permit ``key_bits`` < 2048. Tests only (such keys can be factored).
        batch_size: LR mini-batch rows (None: full batch).
        trees_per_round: SecureBoost trees grown per Flower round.
        check_interval: seconds between scans for newly approved training jobs.
    """

    model_config = SettingsConfigDict(env_prefix="TANDEM_COORD_TRAINING_", extra="ignore")

    enabled: bool = False
    superlink_port: int = Field(default=9092, ge=1, le=65535)
    superlink_host: str = "127.0.0.1"
    state_dir: Path = Path(".tandem/flower")
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    supernode_keys: dict[str, Path] = Field(default_factory=dict)
    poll_interval: float = Field(default=0.1, ge=0.01, le=60.0)
    key_bits: int = Field(default=2048, ge=64, le=8192)
    allow_insecure_test_key: bool = False
    batch_size: int | None = Field(default=None, ge=1)
    trees_per_round: int = Field(default=5, ge=1)
    check_interval: float = Field(default=1.0, gt=0.0)


def arbiter_config(job: JobPublic, settings: TrainingSettings) -> dict[str, Any]:
    """The arbiter's configuration for ``job`` (its parameters plus the launcher's settings).

    LR takes :meth:`protocols.vfl.LrConfig.recommended` for whatever is None here
    (:func:`coordinator.flower.arbiters.lr_job_config`): ``iterations`` when the job names none, the
    full batch when ``batch_size`` is unset.
    """
    params = job.params
    return {
        "iterations": params.iterations, "trees": params.trees or 10, "max_depth": params.max_depth or 3,
        "batch_size": settings.batch_size, "key_bits": settings.key_bits,
        "allow_insecure_test_key": settings.allow_insecure_test_key, "trees_per_round": settings.trees_per_round,
        # the same for every attempt, so a retried job's arbiter has the settings its checkpoints were written under
        "seed": int(job_digest(terms_of(job, with_attempt=False))[:8], 16),
    }


def run_config(job: JobPublic, parties: list[str], settings: TrainingSettings, report_url: str) -> dict[str, Any]:
    """The Flower run config of ``job``'s ServerApp run."""
    return {
        "arbiter": _ARBITERS[job.kind], "job-id": str(job.id), "attempt": job.attempt,
        "parties": ",".join(sorted(parties)),
        "arbiter-config": json.dumps(arbiter_config(job, settings)), "report-url": report_url,
        "nodes-timeout": 120.0, "service-timeout": 1800.0, "round-timeout": 3600.0,
    }


@dataclass
class _Report:
    job_id: int
    status: str
    rounds: int
    body: bytes
    run_id: int | None = None


@dataclass
class _Run:
    """The Flower run of one attempt of a job."""

    attempt: int
    run_id: int
    ended: bool = False


class TrainingLauncher:
    """SuperLink + per-job ServerApp runs (see the module docstring)."""

    def __init__(self, ctx: Context, settings: TrainingSettings) -> None:
        """Bind to the coordinator's context; nothing starts before :meth:`start`."""
        self.ctx, self.settings = ctx, settings
        self._runs: dict[int, _Run] = {}
        self._reports: list[_Report] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: ThreadingHTTPServer | None = None
        self._superlink: Any = None
        self._report_token = secrets.token_urlsafe(32)

    def start(self) -> None:
        """Start the SuperLink, register SuperNode keys, the report endpoint and the scan thread."""
        from coordinator.flower.certs import TlsFiles, generate_tls
        from coordinator.flower.superlink import SuperLinkService

        s = self.settings
        tls = TlsFiles(s.tls_ca, s.tls_cert, s.tls_key) if s.tls_ca and s.tls_cert and s.tls_key else \
            generate_tls(s.state_dir / "tls")
        self._superlink = SuperLinkService(s.state_dir, s.superlink_port, tls, host=s.superlink_host,
                                           poll_interval=s.poll_interval, env={REPORT_TOKEN_ENV: self._report_token})
        self._superlink.start()
        for party, key in s.supernode_keys.items():
            node_id = self._superlink.register(party, key)
            logger.info("SuperNode of %s registered (node %s)", party, node_id)
        self._server = self._report_server()
        threading.Thread(target=self._server.serve_forever, name="training-reports", daemon=True).start()
        self._thread = threading.Thread(target=self._loop, name="training-launcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop scanning, the report endpoint and the SuperLink (with its ServerApp processes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._superlink is not None:
            self._superlink.stop()

    @property
    def report_url(self) -> str:
        """Where the ServerApp reports (loopback)."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/report"

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.check_interval):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the launcher must outlive one bad scan
                logger.exception("training launcher scan failed")

    def tick(self) -> None:
        """Launch runs for new training jobs and attempts, apply the reports that arrived, stop orphaned runs."""
        for job, parties in self._new_jobs():
            lost = self._lost_run(job) if job.id not in self._runs else None
            if lost is None:
                self._launch(job, parties)
            else:
                self._fail_lost(job, lost)
        finished = self._finished_runs()  # before the reports: a ServerApp reports before its run finishes
        with self._lock:
            reports, self._reports = self._reports, []
        for report in reports:
            self._apply(report)
        for job_id, run, status in finished:
            if not run.ended and self._runs.get(job_id) is run:  # it ended without a report
                why = f"its ServerApp ended without a report (the SuperLink says {status.sub_status or status.status}"
                self._apply(_Report(job_id, "failed", -1, (why + (f": {status.details})" if status.details else ")"))
                                    .encode(), run.run_id))
        self._stop_ended_jobs()

    def _finished_runs(self) -> list[tuple[int, _Run, RunStatus]]:
        """The live runs the SuperLink shows finished (their ServerApp process has exited)."""
        found = []
        for job_id, run in list(self._runs.items()):
            if run.ended:
                continue
            try:
                status = self._superlink.status(run.run_id)
            except Exception:  # noqa: BLE001 - the SuperLink busy or restarting: look again on the next scan
                continue
            if status.finished:
                found.append((job_id, run, status))
        return found

    def _new_jobs(self) -> list[tuple[JobPublic, list[str]]]:
        found = []
        with self.ctx.store.read() as tx:
            for status in (JobStatus.APPROVED, JobStatus.RUNNING):
                for job in tx.jobs.list_jobs(status=status):
                    run = self._runs.get(job.id)
                    if job.kind in _ARBITERS and (run is None or run.attempt < job.attempt):
                        found.append((job, tx.jobs.job_parties(job.id)))
        return found

    def _lost_run(self, job: JobPublic) -> int | None:
        """The run an earlier coordinator process started for ``job``'s current attempt, if any.

        Its ServerApp died with that process's SuperLink, and the rounds the nodes had answered with it.
        """
        with self.ctx.store.read() as tx:
            head = tx.audit.head()
            if head is None:
                return None
            found = tx.audit.containing(['"action":"training.run_started"', f'"object":"job:{job.id}"'], head.seq)
        runs = [r.body["details"].get("run_id") for r in found
                if r.body["action"] == "training.run_started" and r.body["object"] == f"job:{job.id}"
                and r.body["details"].get("attempt") == job.attempt]
        return runs[-1] if runs else None

    def _fail_lost(self, job: JobPublic, run_id: int) -> None:
        """Fail the attempt whose run was lost in a coordinator restart (the nodes then stop it; a retry runs anew)."""
        self._runs[job.id] = _Run(job.attempt, run_id, ended=True)
        detail = (f"the coordinator restarted during Flower run {run_id} of attempt {job.attempt}; the run and its "
                  "rounds ended with it. Retry the job: a new attempt starts a new run (train_risk resumes from "
                  "its checkpoints)")
        with self.ctx.store.write() as tx:
            current = tx.jobs.get_job(job.id)
            audit_log.record(self.ctx, tx, ACTOR, "training.run_lost", f"job:{job.id}",
                             {"run_id": run_id, "attempt": job.attempt})
            if current.attempt == job.attempt and current.status not in FINAL \
                    and can_move(current.status, JobStatus.FAILED):
                tx.jobs.update_job(job.id, JobUpdate(status=JobStatus.FAILED, status_detail=detail), self.ctx.clock())
                audit_log.record(self.ctx, tx, ACTOR, "job.status", f"job:{job.id}",
                                 {"from": current.status.value, "to": "failed", "detail": detail})
        logger.warning("job %s: %s", job.id, detail)

    def _launch(self, job: JobPublic, parties: list[str]) -> None:
        from coordinator.flower.superlink import APP_DIR

        previous = self._runs.get(job.id)
        if previous is not None and not previous.ended:
            self._stop_run(job.id, previous, f"attempt {job.attempt} replaces it")
        run_id = self._superlink.run(run_config(job, parties, self.settings, self.report_url), APP_DIR)
        self._runs[job.id] = _Run(job.attempt, run_id)
        with self.ctx.store.write() as tx:
            audit_log.record(self.ctx, tx, ACTOR, "training.run_started", f"job:{job.id}",
                             {"run_id": run_id, "attempt": job.attempt, "arbiter": _ARBITERS[job.kind],
                              "parties": sorted(parties)})
        logger.info("job %s: Flower run %s started (attempt %d)", job.id, run_id, job.attempt)

    def _stop_run(self, job_id: int, run: _Run, why: str) -> None:
        """Stop ``run`` at the SuperLink (its ServerApp and pending messages); audited."""
        run.ended = True
        try:
            self._superlink.stop_run(run.run_id)
        except Exception as exc:  # noqa: BLE001 - it may have ended by itself meanwhile
            logger.info("job %s: Flower run %s not stopped: %s", job_id, run.run_id, type(exc).__name__)
        with self.ctx.store.write() as tx:
            audit_log.record(self.ctx, tx, ACTOR, "training.run_stopped", f"job:{job_id}",
                             {"run_id": run.run_id, "attempt": run.attempt, "why": why})
        logger.info("job %s: Flower run %s stopped (%s)", job_id, run.run_id, why)

    def _stop_ended_jobs(self) -> None:
        live = {job_id: run for job_id, run in self._runs.items() if not run.ended}
        if not live:
            return
        with self.ctx.store.read() as tx:
            ended = {job_id: tx.jobs.get_job(job_id) for job_id in live}
        for job_id, job in ended.items():
            if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and job.attempt == live[job_id].attempt:
                self._stop_run(job_id, live[job_id], f"the job is {job.status}")

    def _apply(self, report: _Report) -> None:
        ok = report.status == "succeeded"
        run = self._runs.get(report.job_id)
        current = run is not None and report.run_id in (None, run.run_id)
        if current and run is not None:
            run.ended = True
        run_id = report.run_id if report.run_id is not None else (run.run_id if run is not None else None)
        details: dict[str, Any] = {"run_id": run_id, "rounds": report.rounds if report.rounds >= 0 else None}
        if run is not None and current:
            details["attempt"] = run.attempt
        elif not current:
            details["stale"] = True  # a run of an earlier attempt: audited, but it decides nothing
        if ok:
            try:
                details["summary"] = json.loads(report.body)
            except ValueError:
                details["summary"] = "unreadable"
        else:
            details["reason"] = report.body.decode(errors="replace")[:500]
        with self.ctx.store.write() as tx:
            audit_log.record(self.ctx, tx, ACTOR, "training.run_finished" if ok else "training.run_failed",
                             f"job:{report.job_id}", details)
            job = tx.jobs.get_job(report.job_id)
            if current and not ok and job.status not in FINAL and can_move(job.status, JobStatus.FAILED):
                after = f" after {report.rounds} round(s)" if report.rounds >= 0 else ""
                detail = f"training run failed{after}: {details['reason']}"
                tx.jobs.update_job(job.id, JobUpdate(status=JobStatus.FAILED, status_detail=detail[:1000]),
                                   self.ctx.clock())
                audit_log.record(self.ctx, tx, ACTOR, "job.status", f"job:{job.id}",
                                 {"from": job.status.value, "to": "failed", "detail": detail[:500]})
        logger.info("job %s: Flower run %s after %s rounds", report.job_id, report.status, details["rounds"])

    def _report_server(self) -> ThreadingHTTPServer:
        launcher = self
        expected = self._report_token.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                if not hmac.compare_digest(self.headers.get(HEADER_REPORT_TOKEN, "").encode(), expected):
                    logger.warning("training report endpoint: refused a report without the report token")
                    self.send_error(403, f"header {HEADER_REPORT_TOKEN} must carry the launcher's report token")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    run_id = self.headers.get("X-Tandem-Run-Id")
                    report = _Report(int(self.headers["X-Tandem-Job-Id"]), self.headers["X-Tandem-Status"],
                                     int(self.headers.get("X-Tandem-Rounds", "0")), body,
                                     int(run_id) if run_id else None)
                except (KeyError, ValueError):
                    self.send_error(400)
                    return
                with launcher._lock:
                    launcher._reports.append(report)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                """Quiet."""

        return ThreadingHTTPServer(("127.0.0.1", 0), Handler)
