"""The operators' steps over the namespace harness: three organisations set up as their READMEs say, then jobs.

:func:`bring_up` does what ``deploy/*/README.md`` tell each organisation's operator to do, in order, with
only the out-of-band copies the READMEs list:

1. bank and telco: write ``.env`` (the token still a placeholder), run the ``supernode-key`` init step;
   each sends its ``/state/supernode/key.pub`` to the coordinator's operator (``supernode-keys/<party>.pub``);
2. coordinator: write ``.env`` (random secrets), ``up`` (PostgreSQL, ``certs``, ``init-db``, ``coordinator``);
   create the users with ``tandem-coordinator user create`` inside the coordinator service, and send each
   party its admin token and ``/state/certs/ca.crt`` (``trust/coordinator-ca.crt`` at the party);
3. bank and telco: put the token (and the compliance officer's public key) into ``.env``, ``up`` (``init``
   registers the party, then ``node`` serves), and register their datasets with the node CLI inside the
   ``node`` service (``/data`` is the read-only data mount).

:func:`run_job` submits a job as the bank's analyst over HTTPS, gives every approval it needs (each party's
data owner signs with ``tandem-<party> approve`` in its own namespace, compliance with its key) and waits.
:func:`verify_audit` exports the audit log, verifies it offline, verifies both egress ledgers and
cross-checks them against the audit log.

What each party learns: what the jobs it runs reveal to it; this module only drives the operators' commands.
"""

from __future__ import annotations

import json
import secrets
import shutil
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from deploy.netns_harness import HarnessError, Topology
from protocols.crypto.signing import SigningKey
from protocols.wire.control import JobPublic, JobStatus

__all__ = ["AuditCheck", "Deployment", "bring_up", "run_job", "run_jobs", "verify_audit"]

COORD_HOST, COORD_PORT, SUPERLINK_PORT = "tandem-coord", 8600, 9092
PUBLIC_HOST = {"bank": "tandem-bank", "telco": "tandem-telco"}
DATASETS = {"bank": ["bank_customers", "bank_lost_contacts"], "telco": ["telco_subscribers"]}
USERS = [("bank-admin", "admin", "bank"), ("bank-analyst", "analyst", "bank"), ("telco-admin", "admin", "telco")]
FINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.REJECTED, JobStatus.CANCELLED}


class _Dial(httpx.HTTPTransport):
    """HTTPS to a URL's host at ``address``, across the bridge.

    The URL and the certificate name stay the host's (the root namespace has no hosts entry for the
    organisations' names); only the TCP connection goes to the address.
    """

    def __init__(self, address: str, verify: ssl.SSLContext) -> None:
        super().__init__(verify=verify)
        self.address = address

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions = {**request.extensions, "sni_hostname": request.url.host}
        request.url = request.url.copy_with(host=self.address)
        return super().handle_request(request)


@dataclass
class Deployment:
    """Handles on the three running organisations."""

    topo: Topology
    tokens: dict[str, str]
    auditor_key: SigningKey
    ca: Path
    datasets: dict[str, int] = field(default_factory=dict)

    def api(self, user: str) -> httpx.Client:
        """A client of the coordinator's HTTPS API as ``user`` (``compliance`` for the auditor)."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(base_url=f"https://{COORD_HOST}:{COORD_PORT}/api/v1", timeout=30.0,
                            transport=_Dial(self.topo.orgs["coordinator"].address, ctx),
                            headers={"Authorization": f"Bearer {self.tokens[user]}"})

    def node(self, party: str, *args: str, timeout: float = 600.0) -> str:
        """``tandem-<party> ARGS`` inside the party's ``node`` service (its namespace and environment)."""
        proc = self.topo.exec(party, "node", [f"tandem-{party}", *args], timeout=timeout)
        return proc.stdout + proc.stderr


def _write_env(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")


def _node_env(party: str, token: str, auditor_keys: list[str], test_key: bool) -> dict[str, str]:
    env = {"TANDEM_PARTY": party, "TANDEM_COORDINATOR_URL": f"https://{COORD_HOST}:{COORD_PORT}",
           "TANDEM_SUPERLINK": f"{COORD_HOST}:{SUPERLINK_PORT}", "TANDEM_API_TOKEN": token,
           "TANDEM_PUBLIC_HOST": PUBLIC_HOST[party], "TANDEM_AUDITOR_KEYS": json.dumps(auditor_keys),
           "TANDEM_DATA_DIR": "./data"}
    return env | ({"TANDEM_ALLOW_INSECURE_TEST_KEY": "1"} if test_key else {})


def _write_data(topo: Topology, n: int, seed: int) -> None:
    """A synthetic population; each party's tables and governance files into its own ``./data``."""
    from demo.steps import GOVERNANCE
    from demo.synthetic import generate

    generated = topo.workdir / "generated"
    if not (generated / "telco_subscribers.csv").exists():
        generate(generated, n=n, seed=seed, progress=False)
    for party, names in DATASETS.items():
        data = topo.project_dirs[party] / "data"
        (data / "governance").mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(generated / f"{name}.csv", data / f"{name}.csv")
            shutil.copy(GOVERNANCE / f"{name}.yaml", data / "governance" / f"{name}.yaml")


def bring_up(topo: Topology, *, n: int = 2000, seed: int = 7, test_key_bits: int | None = 512) -> Deployment:
    """Set the three organisations up the way their READMEs say (see the module docstring)."""
    test_key = test_key_bits is not None
    auditor_key = SigningKey.generate()
    _write_data(topo, n, seed)
    for party in ("bank", "telco"):  # 1. the SuperNode keys, before anything else
        _write_env(topo.project_dirs[party] / ".env", _node_env(party, "changeme", [], test_key))
        topo.up(party, ["supernode-key"])
        pub = topo.volume(party, f"{party}-state") / "supernode" / "key.pub"
        target = topo.project_dirs["coordinator"] / "supernode-keys" / f"{party}.pub"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pub, target)
    coord_env = {"TANDEM_DB_PASSWORD": secrets.token_hex(16), "TANDEM_BOOTSTRAP_TOKEN": secrets.token_urlsafe(32),
                 "TANDEM_PUBLIC_HOST": COORD_HOST}
    if test_key:
        coord_env |= {"TANDEM_TRAINING_KEY_BITS": str(test_key_bits), "TANDEM_ALLOW_INSECURE_TEST_KEY": "1"}
    _write_env(topo.project_dirs["coordinator"] / ".env", coord_env)
    topo.up("coordinator")  # 2. the coordinator, then users and what the parties need from it
    tokens = {}
    for name, role, party in [*USERS, ("compliance", "auditor", None)]:
        args = ["tandem-coordinator", "user", "create", "--name", name, "--role", role]
        args += ["--party", party] if party else ["--signing-key", auditor_key.public_hex]
        tokens[name] = topo.exec("coordinator", "coordinator", args).stdout.strip().splitlines()[-1]
    ca = topo.volume("coordinator", "coordinator-state") / "certs" / "ca.crt"
    for party in ("bank", "telco"):  # 3. the nodes
        trust = topo.project_dirs[party] / "trust"
        trust.mkdir(parents=True, exist_ok=True)
        shutil.copy(ca, trust / "coordinator-ca.crt")
        _write_env(topo.project_dirs[party] / ".env",
                   _node_env(party, tokens[f"{party}-admin"], [auditor_key.public_hex], test_key))
        topo.up(party)
    dep = Deployment(topo, tokens, auditor_key, trust / "coordinator-ca.crt")
    for party, names in DATASETS.items():
        for name in names:
            out = dep.node(party, "register-dataset", "--source", f"csv:///data/{name}.csv",
                           "--governance", f"/data/governance/{name}.yaml")
            print(f"   {party}: {out.strip().splitlines()[-1]}", flush=True)
    with dep.api("bank-analyst") as c:
        dep.datasets = {d["name"]: d["id"] for d in c.get("/datasets").raise_for_status().json()}
    return dep


def run_job(dep: Deployment, body: dict[str, Any], timeout: float = 900.0) -> JobPublic:
    """Submit ``body`` as the bank analyst, give every approval it needs, wait until it is final.

    Raises:
        HarnessError: the coordinator refused the job, or it did not end in ``timeout`` seconds.
    """
    with dep.api("bank-analyst") as c:
        r = c.post("/jobs", json=body)
        if r.status_code >= 400:
            raise HarnessError(f"job refused ({r.status_code}): {r.text}")
        job = JobPublic.model_validate(r.json())
    for req in job.required_approvals:
        if req.startswith("party:"):
            dep.node(req.split(":", 1)[1], "approve", str(job.id), "--yes")
        else:
            with dep.api("compliance") as c:
                c.post(f"/jobs/{job.id}/approvals", json={
                    "approver": "auditor", "signature": dep.auditor_key.sign_approval(job.digest)}).raise_for_status()
    deadline = time.monotonic() + timeout
    with dep.api("compliance") as c:
        while time.monotonic() < deadline:
            job = JobPublic.model_validate(c.get(f"/jobs/{job.id}").raise_for_status().json())
            if job.status in FINAL:
                return job
            time.sleep(1.0)
    raise HarnessError(f"job {job.id} not final after {timeout:.0f}s: {job.status} {job.status_detail}")


def run_jobs(dep: Deployment) -> dict[str, JobPublic]:
    """The audience-overlap PSI job (count) and the credit-risk training job; print what they returned."""
    from demo.scenario import demo_jobs

    bodies = {body["kind"]: body for _, body in demo_jobs(dep.datasets)}
    done = {}
    for kind in ("audience_overlap", "train_risk"):
        job = run_job(dep, bodies[kind])
        shown = {p: {k: v for k, v in o.items() if not isinstance(v, list | dict)} for p, o in job.outputs.items()}
        print(f"job {job.id} {kind}: {job.status} {job.status_detail}\n   outputs: {json.dumps(shown)[:900]}",
              flush=True)
        done[kind] = job
    return done


@dataclass
class AuditCheck:
    """What the audit and ledger checks printed, and whether all passed."""

    ok: bool
    text: str


def verify_audit(dep: Deployment) -> AuditCheck:
    """Export the audit log as compliance, verify it offline, verify and cross-check both egress ledgers."""
    out = dep.topo.workdir / "audit"
    out.mkdir(parents=True, exist_ok=True)
    export = out / "audit.jsonl"
    with dep.api("compliance") as c:
        export.write_bytes(c.get("/audit/export").raise_for_status().content)
        key = c.get("/audit/public-key").raise_for_status().json()["public_key"]
    coordinator = str(Path(sys.executable).with_name("tandem-coordinator"))
    lines, ok = [], True
    verify = subprocess.run([coordinator, "audit", "verify", str(export), "--key", key], capture_output=True,
                            text=True, timeout=300)
    ok &= verify.returncode == 0
    lines.append(f"$ tandem-coordinator audit verify audit.jsonl --key {key[:16]}…  (exit {verify.returncode})\n"
                 + (verify.stdout + verify.stderr).strip())
    ledgers = []
    for party in ("bank", "telco"):
        proc = dep.topo.exec(party, "node", [f"tandem-{party}", "ledger", "verify"], check=False)
        ok &= proc.returncode == 0
        lines.append(f"$ tandem-{party} ledger verify  (exit {proc.returncode})\n"
                     + (proc.stdout + proc.stderr).strip())
        dep.topo.exec(party, "node", [f"tandem-{party}", "ledger", "export", "--out", "/state/ledger-export.jsonl"])
        ledgers += ["--ledger", f"{party}={dep.topo.volume(party, f'{party}-state') / 'ledger-export.jsonl'}"]
    cross = subprocess.run([coordinator, "audit", "cross-check", "--audit", str(export), *ledgers, "--key", key],
                           capture_output=True, text=True, timeout=300)
    ok &= cross.returncode == 0
    lines.append(f"$ tandem-coordinator audit cross-check  (exit {cross.returncode})\n"
                 + (cross.stdout + cross.stderr).strip())
    return AuditCheck(ok, "\n".join(lines))
