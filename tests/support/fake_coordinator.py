"""An in-memory stand-in for the coordinator API, served through ``httpx.MockTransport``.

``FakeCoordinator`` serves one node and records its writes as ``(job_id, report)`` pairs;
``TwoPartyCoordinator`` serves both nodes of a ``tests.support.world.World`` and records per party.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
from collections.abc import Callable

import httpx

from protocols.crypto.signing import job_digest
from protocols.wire.canonical import canonical_json
from protocols.wire.control import (
    ApprovalCreate,
    ApprovalPublic,
    DatasetPublic,
    DatasetRegister,
    Decision,
    JobInput,
    JobKind,
    JobParams,
    JobProgress,
    JobPublic,
    JobResultReport,
    JobStatus,
    PartyCreate,
    PartyPublic,
    Purpose,
    job_terms,
)

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def make_job(job_id: int, *, kind: JobKind = JobKind.AUDIENCE_OVERLAP, purpose: Purpose = Purpose.MARKETING,
             inputs: list[JobInput] | None = None, params: JobParams | None = None,
             approvers: tuple[str, ...] = ("party:bank", "party:telco"), status: JobStatus = JobStatus.APPROVED,
             title: str = "overlap of customers", parties: dict[int, str] | None = None) -> JobPublic:
    """A coordinator-side job with a correct digest and no approvals yet.

    As the real coordinator does, inputs without a ``party`` get their owner (``parties``: dataset id to
    party, by default dataset 1 is the bank's and 2 the telco's) and ``params.min_cell`` gets the policy's
    k (50) when unset.
    """
    owners = parties or {1: "bank", 2: "telco"}
    inputs = inputs or [JobInput(dataset_id=1, key_fields=["mobile"]), JobInput(dataset_id=2, key_fields=["msisdn"])]
    inputs = [i if i.party is not None or i.dataset_id not in owners
              else i.model_copy(update={"party": owners[i.dataset_id]}) for i in inputs]
    params = params or JobParams(output_mode="count", min_cell=50)
    if params.min_cell is None:
        params = params.model_copy(update={"min_cell": 50})
    terms = job_terms(job_id, kind, purpose, title, inputs, params, "v1", attempt=1)
    return JobPublic(
        id=job_id, kind=kind, purpose=purpose, title=title, inputs=inputs, params=params, status=status,
        status_detail="", stage="", progress=0.0, digest=job_digest(terms), policy_version="v1",
        decision=Decision(allowed=True, policy_version="v1", rules=[], required_approvals=list(approvers)),
        required_approvals=list(approvers), approvals=[], outputs={}, created_by="analyst",
        created_at=NOW, updated_at=NOW,
    )


class FakeCoordinator:
    """Holds parties, datasets and jobs; records every write a node makes."""

    def __init__(self) -> None:
        self.parties: dict[str, PartyPublic] = {}
        self.datasets: dict[int, DatasetPublic] = {}
        self.jobs: dict[int, JobPublic] = {}
        self.progress: list[tuple[int, JobProgress]] = []
        self.results: list[tuple[int, JobResultReport]] = []
        self.retries: list[tuple[int, dict]] = []
        self.bodies: list[bytes] = []
        self.down = False
        self._lock = threading.RLock()

    def transport(self, party: str = "") -> httpx.MockTransport:
        """A transport for one node; ``party`` names it in what ``_record_*`` keeps."""
        return httpx.MockTransport(lambda request: self.handle(request, party))

    def add_approval(self, job_id: int, approval: ApprovalCreate) -> None:
        job = self.jobs[job_id]
        extra = ApprovalPublic(approver=approval.approver, signature=approval.signature, signer_key="",
                               user="admin", created_at=NOW)
        self.jobs[job_id] = job.model_copy(update={"approvals": [*job.approvals, extra]})

    def handle(self, request: httpx.Request, party: str = "") -> httpx.Response:
        with self._lock:
            return self._handle(request, party)

    def _handle(self, request: httpx.Request, party: str) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        assert request.headers["authorization"].startswith("Bearer ")
        path = request.url.path.removeprefix("/api/v1")
        body = json.loads(request.content) if request.content else None
        if request.content:
            self.bodies.append(request.content)
        for pattern, method, fn in self._routes(party):
            m = re.fullmatch(pattern, path)
            if m and request.method == method:
                return fn(request, body, *m.groups())
        return httpx.Response(404, json={"detail": "Not Found"})

    def _routes(self, party: str) -> list[tuple[str, str, Callable[..., httpx.Response]]]:
        me = {"id": 1, "name": "admin", "role": "admin", "party": party or "bank", "signing_key": None,
              "created_at": NOW.isoformat()}  # a transport without a party serves the bank's node (test_cli)
        return [
            (r"/healthz", "GET", lambda r, b: self._ok({"status": "ok", "policy_version": "v1"})),
            (r"/audit/public-key", "GET", lambda r, b: self._ok({"public_key": "00" * 32})),
            (r"/users/me", "GET", lambda r, b: self._ok(me)),
            (r"/parties", "POST", self._post_party),
            (r"/parties", "GET", lambda r, b: self._ok([p.model_dump(mode="json") for p in self.parties.values()])),
            (r"/parties/([a-z0-9_\-]+)", "GET", self._get_party),
            (r"/datasets", "POST", self._post_dataset),
            (r"/datasets/(\d+)", "GET", lambda r, b, i: self._ok(self.datasets[int(i)].model_dump(mode="json"))),
            (r"/jobs/(\d+)", "GET", lambda r, b, i: self._ok(self.jobs[int(i)].model_dump(mode="json"))),
            (r"/jobs/(\d+)/approvals", "POST", self._post_approval),
            (r"/nodes/jobs", "GET", self._node_jobs),
            (r"/jobs/(\d+)/progress", "POST",
             lambda r, b, i: self._post_progress(party, int(i), JobProgress.model_validate(b))),
            (r"/jobs/(\d+)/result", "POST",
             lambda r, b, i: self._post_result(party, int(i), JobResultReport.model_validate(b))),
            (r"/jobs/(\d+)/retry", "POST", self._post_retry),
        ]

    @staticmethod
    def _ok(data, status=200):
        return httpx.Response(status, json=data)

    def _post_party(self, request, body):
        party = PartyCreate.model_validate(body)
        public = PartyPublic(id=len(self.parties) + 1, created_at=NOW, **party.model_dump())
        self.parties[party.name] = public
        return self._ok(public.model_dump(mode="json"), 201)

    def _get_party(self, request, body, name):
        if name not in self.parties:
            return httpx.Response(404, json={"detail": {"message": f"no party {name}", "field": "name"}})
        return self._ok(self.parties[name].model_dump(mode="json"))

    def _post_dataset(self, request, body):
        dataset = DatasetRegister.model_validate(body)
        if dataset.name == "rejected":
            return httpx.Response(400, json={"detail": {"message": "security_level 1 is too low for an identifier",
                                                        "field": "fields.mobile.security_level",
                                                        "fix": "set security_level >= 3"}})
        digest = hashlib.sha256(canonical_json(body)).hexdigest()
        public = DatasetPublic(id=len(self.datasets) + 1, party="bank", schema_digest=digest, created_at=NOW,
                               **dataset.model_dump())
        self.datasets[public.id] = public
        return self._ok(public.model_dump(mode="json"), 201)

    def _post_approval(self, request, body, job_id):
        self.add_approval(int(job_id), ApprovalCreate.model_validate(body))
        return self._ok({"ok": True}, 201)

    def _node_jobs(self, request, body):
        status = request.url.params["status"]
        return self._ok([j.model_dump(mode="json") for j in self.jobs.values() if j.status == status])

    def _post_progress(self, party: str, job_id: int, progress: JobProgress) -> httpx.Response:
        self._record_progress(party, job_id, progress)
        return self._ok({"ok": True})

    def _record_progress(self, party: str, job_id: int, progress: JobProgress) -> None:
        self.progress.append((job_id, progress))

    def _post_retry(self, request, body, job_id):
        job = self.jobs[int(job_id)]
        if job.status != JobStatus.FAILED:
            return httpx.Response(409, json={"detail": [{"field": None, "fix": None,
                                                         "message": f"job {job_id} is {job.status}; only a failed "
                                                                    "job can be retried"}]})
        self.retries.append((int(job_id), body))
        # an approval signs one attempt: the retried job waits for every signature again
        self.jobs[int(job_id)] = job.model_copy(update={"status": JobStatus.PENDING_APPROVAL, "approvals": [],
                                                        "attempt": job.attempt + 1})
        return self._ok(self.jobs[int(job_id)].model_dump(mode="json"))

    def _post_result(self, party: str, job_id: int, report: JobResultReport) -> httpx.Response:
        self._record_result(party, job_id, report)
        job = self.jobs.get(job_id)
        if report.status == "failed" and job is not None and job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            # as the real coordinator does: one party's failure fails the job, so the other party's wait
            # on it (JobContext.check_current) ends
            self.jobs[job_id] = job.model_copy(update={"status": JobStatus.FAILED,
                                                       "status_detail": f"{party}: {report.detail or 'failed'}"})
        return self._ok({"ok": True})

    def _record_result(self, party: str, job_id: int, report: JobResultReport) -> None:
        self.results.append((job_id, report))


class TwoPartyCoordinator(FakeCoordinator):
    """A fake coordinator for two nodes: progress as ``(job_id, party, progress)``, results by job then party."""

    def __init__(self) -> None:
        super().__init__()
        self.progress: list[tuple[int, str, JobProgress]] = []  # type: ignore[assignment]
        self.results: dict[int, dict[str, JobResultReport]] = {}  # type: ignore[assignment]

    def _record_progress(self, party: str, job_id: int, progress: JobProgress) -> None:
        self.progress.append((job_id, party, progress))

    def _record_result(self, party: str, job_id: int, report: JobResultReport) -> None:
        self.results.setdefault(job_id, {})[party] = report
