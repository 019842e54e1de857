"""The steps that bring up a local federation and drive jobs through it, for the demo, tests and benches.

A federation here is the coordinator, the bank node and the telco node as separate processes on
loopback (``ProcessGroup``). The set-up steps, in order: ``training_env`` (Flower TLS and SuperNode
keys), ``start_coordinator``, ``create_users``, ``node_env`` per party, a ``Federation``,
``register_demo_datasets`` (or ``register_datasets``), ``start_nodes``. The job steps act through the
coordinator API and the node CLIs: ``submit``, ``approve``, ``wait_job``, ``datasets``, ``job_trail``.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from demo._synthetic_branches import write_branches
from demo.processes import ProcessGroup, free_port, http_ok, wait_until
from protocols.crypto.signing import SigningKey
from protocols.wire.control import JobPublic, JobStatus

GOVERNANCE = Path(__file__).resolve().parent / "governance"
DEMO_DATASETS = {"bank": ["bank_customers", "bank_lost_contacts", "bank_branches"], "telco": ["telco_subscribers"]}
FINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.REJECTED, JobStatus.CANCELLED}
USERS = [
    ("bank-admin", "admin", "bank"),
    ("bank-analyst", "analyst", "bank"),
    ("telco-admin", "admin", "telco"),
    ("telco-operator", "operator", "telco"),
    ("compliance", "auditor", None),
]


def script(name: str) -> str:
    """Path of a console script installed beside this interpreter."""
    return str(Path(sys.executable).with_name(name))


def base_env() -> dict[str, str]:
    """The environment of this process, with Flower's telemetry and update checks off."""
    return {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}


@dataclass
class Federation:
    """Handles on a running local federation."""

    state: Path
    coord_url: str
    tokens: dict[str, str]
    auditor_key: SigningKey
    node_env: dict[str, dict[str, str]]
    group: ProcessGroup

    def api(self, user: str) -> httpx.Client:
        """An HTTP client for the coordinator acting as ``user``."""
        return httpx.Client(base_url=self.coord_url + "/api/v1", timeout=30.0,
                            headers={"Authorization": f"Bearer {self.tokens[user]}"})

    def node(self, party: str, *args: str, check: bool = True) -> str:
        """Run a node CLI command for ``party`` and return its output."""
        proc = subprocess.run([script(f"tandem-{party}"), *args], env={**base_env(), **self.node_env[party]},
                              capture_output=True, text=True, timeout=600)
        if check and proc.returncode != 0:
            raise RuntimeError(f"tandem-{party} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout + proc.stderr


def _alive_and(group: ProcessGroup, probe: Callable[[], bool]) -> Callable[[], bool]:
    """``probe``, after checking that every started process is still alive (raises if one died)."""

    def check() -> bool:
        group.check_alive()
        return probe()

    return check


def start_coordinator(state: Path, group: ProcessGroup, training: dict[str, str]) -> tuple[str, str]:
    """Start the coordinator (SQLite under ``state``) in ``group``; return its URL and bootstrap token.

    Args:
        state: Where the coordinator's database and signing key are written.
        group: The process group that owns the coordinator process.
        training: Extra environment for the coordinator (``training_env``'s first part).

    Returns:
        ``(url, bootstrap token)`` once ``/healthz`` answers.
    """
    port, token = free_port(), secrets.token_urlsafe(32)
    state.chmod(0o700)  # the coordinator refuses a state directory that other users can read
    env = {
        "TANDEM_COORD_DATABASE_URL": f"sqlite:///{state / 'coordinator.db'}",
        "TANDEM_COORD_BOOTSTRAP_TOKEN": token,
        "TANDEM_COORD_SIGNING_KEY_PATH": str(state / "coordinator_signing.key"),
        **training,
    }
    group.start("coordinator", [script("tandem-coordinator"), "serve", "--host", "127.0.0.1", "--port", str(port)],
                env)
    url = f"http://127.0.0.1:{port}"
    wait_until(_alive_and(group, http_ok(url + "/api/v1/healthz")), timeout=120, what="the coordinator's /healthz")
    return url, token


def create_users(coord_url: str, bootstrap: str, auditor_key: SigningKey) -> dict[str, str]:
    """Create the demo's users (``USERS``) with the bootstrap token; return each user's API token."""
    tokens: dict[str, str] = {}
    with httpx.Client(base_url=coord_url + "/api/v1", timeout=30.0,
                      headers={"Authorization": f"Bearer {bootstrap}"}) as c:
        for name, role, party in USERS:
            body: dict[str, Any] = {"name": name, "role": role, "party": party}
            if role == "auditor":
                body["signing_key"] = auditor_key.public_hex
            r = c.post("/users", json=body)
            r.raise_for_status()
            tokens[name] = r.json()["token"]
    return tokens


def node_env(
    state: Path, coord_url: str, party: str, token: str, auditor_keys: Sequence[str] = ()
) -> dict[str, str]:
    """The environment of ``party``'s node.

    That is its coordinator, token, state directory, free ports, and the compliance officers' public
    keys it trusts (``auditor_keys``: a job needing an auditor runs only with a signature under one).
    """
    prefix = f"TANDEM_{party.upper()}_"
    port = free_port()
    scoring = {prefix + "SCORING_API_KEY": secrets.token_urlsafe(32), prefix + "SCORING_PORT": str(free_port())}
    return {
        **(scoring if party == "bank" else {}),
        prefix + "PARTY": party,
        prefix + "KIND": party,
        prefix + "COORDINATOR_URL": coord_url,
        prefix + "API_TOKEN": token,
        prefix + "STATE_DIR": str(state / party),
        prefix + "LISTEN_PORT": str(port),
        prefix + "NODE_URL": f"https://localhost:{port}",
        prefix + "POLL_INTERVAL": "0.5",
        prefix + "AUDITOR_KEYS": json.dumps(list(auditor_keys)),
    }


def training_env(state: Path, test_key_bits: int | None) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """TLS for the SuperLink and each node's SuperNode key, and the environment that points everyone at them.

    Args:
        state: Where the Flower certificates, keys and SuperLink state are written.
        test_key_bits: TEST ONLY: Paillier keys of this many bits (insecure); ``None`` for the default.

    Returns:
        ``(coordinator environment, {party: node environment})``.
    """
    from coordinator.flower.certs import generate_supernode_key, generate_tls

    tls = generate_tls(state / "flower" / "tls")
    keys = {p: generate_supernode_key(state / "flower" / "supernode-keys" / p, p) for p in ("bank", "telco")}
    port = free_port()
    coord = {
        "TANDEM_COORD_TRAINING_ENABLED": "1", "TANDEM_COORD_TRAINING_SUPERLINK_PORT": str(port),
        "TANDEM_COORD_TRAINING_STATE_DIR": str(state / "flower" / "superlink"),
        "TANDEM_COORD_TRAINING_TLS_CA": str(tls.ca_cert), "TANDEM_COORD_TRAINING_TLS_CERT": str(tls.server_cert),
        "TANDEM_COORD_TRAINING_TLS_KEY": str(tls.server_key),
        "TANDEM_COORD_TRAINING_SUPERNODE_KEYS": json.dumps({p: str(k.public_key) for p, k in keys.items()}),
    }
    nodes: dict[str, dict[str, str]] = {}
    for party, key in keys.items():
        prefix = f"TANDEM_{party.upper()}_TRAINING_"
        nodes[party] = {prefix + "SUPERLINK": f"127.0.0.1:{port}", prefix + "SUPERLINK_CA": str(tls.ca_cert),
                        prefix + "SUPERNODE_KEY": str(key.private_key)}
    if test_key_bits is not None:
        coord |= {"TANDEM_COORD_TRAINING_KEY_BITS": str(test_key_bits),
                  "TANDEM_COORD_TRAINING_ALLOW_INSECURE_TEST_KEY": "1"}
        for party in nodes:
            nodes[party][f"TANDEM_{party.upper()}_TRAINING_ALLOW_INSECURE_TEST_KEY"] = "1"
    return coord, nodes


def register_datasets(fed: Federation, datasets: Mapping[str, Sequence[tuple[Path, Path]]]) -> None:
    """Initialise each party's node (keys, certificate, party) and register its datasets in the catalog.

    Args:
        fed: The federation, its node services not started yet.
        datasets: party -> ``[(CSV file, governance YAML), ...]``; only schemas and coarse statistics
            reach the coordinator, the rows stay in the files (read again when a job runs).
    """
    for party, sets in datasets.items():
        print(fed.node(party, "init").strip().replace("\n", "\n   "))
        for source, governance in sets:
            out = fed.node(party, "register-dataset", "--source", f"csv://{source}", "--governance", str(governance))
            print("   " + out.strip().splitlines()[-1])


def register_demo_datasets(fed: Federation, data_dir: Path, governance: Path = GOVERNANCE) -> None:
    """``register_datasets`` for the synthetic tables in ``data_dir`` (``DEMO_DATASETS``) under ``governance``.

    The bank's branches (``bank_branches.csv``, fixed: ``demo._synthetic_branches``) are written to
    ``data_dir`` first if they are not there yet; the population generator writes the other tables.
    """
    if not (data_dir / "bank_branches.csv").exists():
        write_branches(data_dir)
    register_datasets(fed, {party: [(data_dir / f"{n}.csv", governance / f"{n}.yaml") for n in sets]
                            for party, sets in DEMO_DATASETS.items()})


def start_nodes(fed: Federation) -> None:
    """Start the bank and telco node services and wait until each listens on its port."""
    for party in ("bank", "telco"):
        fed.group.start(f"{party}-node", [script(f"tandem-{party}"), "-v", "serve"], fed.node_env[party])
    for party in ("bank", "telco"):
        port = fed.node_env[party][f"TANDEM_{party.upper()}_LISTEN_PORT"]
        cert = fed.state / party / "tls" / "cert.pem"
        wait_until(_alive_and(fed.group, functools.partial(node_up, port, cert)), timeout=60,
                   what=f"the {party} node on port {port}")


def node_up(port: str, cert: Path) -> bool:
    """Whether a node accepts TCP connections on ``port`` on loopback (raises if not)."""
    with socket.create_connection(("127.0.0.1", int(port)), timeout=1.0):
        return True


def submit(fed: Federation, body: dict[str, Any]) -> JobPublic:
    """Submit a job as the bank analyst; raises ``RuntimeError`` if the coordinator refuses it."""
    with fed.api("bank-analyst") as c:
        r = c.post("/jobs", json=body)
        if r.status_code >= 400:
            raise RuntimeError(f"job submission refused ({r.status_code}): {r.text}")
        return JobPublic.model_validate(r.json())


def approve(fed: Federation, job: JobPublic) -> None:
    """Give every approval ``job`` requires: parties sign through their node CLI, compliance with its key."""
    for req in job.required_approvals:
        if req.startswith("party:"):
            party = req.split(":", 1)[1]
            fed.node(party, "approve", str(job.id), "--yes")
            print(f"   {party}'s data owner signed job {job.id} with the party's Ed25519 key")
        else:
            sig = fed.auditor_key.sign_approval(job.digest)
            with fed.api("compliance") as c:
                c.post(f"/jobs/{job.id}/approvals", json={"approver": "auditor", "signature": sig}).raise_for_status()
            print(f"   compliance signed job {job.id}")


def wait_job(fed: Federation, job_id: int, *, timeout: float = 900.0) -> JobPublic:
    """Wait until the job is final, or is parked waiting for a protocol; print progress as it moves.

    Read as compliance: a party's users see only their own party's outputs, the demo prints both.
    """
    last = ""
    deadline = time.monotonic() + timeout
    with fed.api("compliance") as c:
        while time.monotonic() < deadline:
            fed.group.check_alive()
            job = JobPublic.model_validate(c.get(f"/jobs/{job_id}").json())
            line = f"{job.status} {job.stage} {job.progress:.0%} {job.status_detail}".strip()
            if line != last:
                print(f"   job {job_id}: {line}", flush=True)
                last = line
            if job.status in FINAL or (job.status == JobStatus.APPROVED and job.status_detail.startswith("waiting:")):
                return job
            time.sleep(0.5)
    raise TimeoutError(f"job {job_id} did not finish in {timeout:.0f}s (last: {last})")


def datasets(fed: Federation) -> dict[str, int]:
    """The catalog's dataset ids by name."""
    with fed.api("bank-analyst") as c:
        return {d["name"]: d["id"] for d in c.get("/datasets").json()}


def job_trail(fed: Federation, job_id: int) -> list[dict[str, Any]]:
    """Every audit event about ``job_id`` (read as compliance, page by page)."""
    trail: list[dict[str, Any]] = []
    after = -1
    with fed.api("compliance") as c:
        while True:
            events = c.get("/audit/events", params={"after_seq": after, "limit": 1000}).json()
            trail += [e for e in events if e["object"] == f"job:{job_id}"]
            if len(events) < 1000:
                return trail
            after = events[-1]["seq"]
