"""The one-command demo: a whole federation on loopback, from synthetic data to a verified audit chain.

Steps: generate a seeded population; start the coordinator, the bank node and the telco node as
separate processes; create users; each node creates its keys and certificate and registers its party
and datasets (schemas only); a job that policy denies (and why); jobs approved by Ed25519 signatures
and run by the nodes; finally the audit chain is exported and verified offline, and the node ledgers
are verified.
"""

from __future__ import annotations

import argparse
import functools
import json
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from demo.processes import ProcessGroup, free_port, http_ok, wait_until
from protocols.crypto.signing import SigningKey
from protocols.wire.control import JobPublic, JobStatus

__all__ = ["main", "register_datasets"]

_FINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.REJECTED, JobStatus.CANCELLED}


def _say(step: str, text: str = "") -> None:
    print(f"\n== {step}" + (f"\n   {text}" if text else ""), flush=True)


def _script(name: str) -> str:
    """Path of a console script installed beside this interpreter."""
    return str(Path(sys.executable).with_name(name))


@dataclass
class Federation:
    """Handles on the running demo federation."""

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
        import subprocess

        proc = subprocess.run([_script(f"tandem-{party}"), *args], env={**_base_env(), **self.node_env[party]},
                              capture_output=True, text=True, timeout=600)
        if check and proc.returncode != 0:
            raise RuntimeError(f"tandem-{party} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout + proc.stderr


def _base_env() -> dict[str, str]:
    import os

    return {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}


def _alive_and(group: ProcessGroup, probe: Callable[[], bool]) -> Callable[[], bool]:
    """``probe``, after checking that every started process is still alive (raises if one died)."""

    def check() -> bool:
        group.check_alive()
        return probe()

    return check


def _start_coordinator(state: Path, group: ProcessGroup, training: dict[str, str]) -> tuple[str, str]:
    port, token = free_port(), secrets.token_urlsafe(32)
    env = {
        "TANDEM_COORD_DATABASE_URL": f"sqlite:///{state / 'coordinator.db'}",
        "TANDEM_COORD_BOOTSTRAP_TOKEN": token,
        "TANDEM_COORD_SIGNING_KEY_PATH": str(state / "coordinator_signing.key"),
        **training,
    }
    group.start("coordinator", [_script("tandem-coordinator"), "serve", "--host", "127.0.0.1", "--port", str(port)],
                env)
    url = f"http://127.0.0.1:{port}"
    wait_until(_alive_and(group, http_ok(url + "/api/v1/healthz")), timeout=120, what="the coordinator's /healthz")
    return url, token


def _create_users(coord_url: str, bootstrap: str, auditor_key: SigningKey) -> dict[str, str]:
    users = [
        ("bank-admin", "admin", "bank", None),
        ("bank-analyst", "analyst", "bank", None),
        ("telco-admin", "admin", "telco", None),
        ("telco-operator", "operator", "telco", None),
        ("compliance", "auditor", None, auditor_key.public_hex),
    ]
    tokens: dict[str, str] = {}
    with httpx.Client(base_url=coord_url + "/api/v1", timeout=30.0,
                      headers={"Authorization": f"Bearer {bootstrap}"}) as c:
        for name, role, party, key in users:
            body: dict[str, Any] = {"name": name, "role": role, "party": party}
            if key:
                body["signing_key"] = key
            r = c.post("/users", json=body)
            r.raise_for_status()
            tokens[name] = r.json()["token"]
    return tokens


def _node_env(state: Path, coord_url: str, party: str, token: str) -> dict[str, str]:
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
    }


def _wait_job(fed: Federation, job_id: int, *, timeout: float = 900.0) -> JobPublic:
    """Wait until the job is final, or is parked waiting for a protocol; print progress as it moves."""
    last = ""
    deadline = time.monotonic() + timeout
    with fed.api("bank-analyst") as c:
        while time.monotonic() < deadline:
            fed.group.check_alive()
            job = JobPublic.model_validate(c.get(f"/jobs/{job_id}").json())
            line = f"{job.status} {job.stage} {job.progress:.0%} {job.status_detail}".strip()
            if line != last:
                print(f"   job {job_id}: {line}", flush=True)
                last = line
            if job.status in _FINAL or (job.status == JobStatus.APPROVED and job.status_detail.startswith("waiting:")):
                return job
            time.sleep(0.5)
    raise TimeoutError(f"job {job_id} did not finish in {timeout:.0f}s (last: {last})")


def _submit(fed: Federation, body: dict[str, Any]) -> JobPublic:
    with fed.api("bank-analyst") as c:
        r = c.post("/jobs", json=body)
        if r.status_code >= 400:
            raise RuntimeError(f"job submission refused ({r.status_code}): {r.text}")
        return JobPublic.model_validate(r.json())


def _approve(fed: Federation, job: JobPublic) -> None:
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


def _datasets(fed: Federation) -> dict[str, int]:
    with fed.api("bank-analyst") as c:
        return {d["name"]: d["id"] for d in c.get("/datasets").json()}


def _print_decision(job: JobPublic) -> None:
    for rule in job.decision.rules:
        if not rule.allowed:
            print(f"   DENIED by {rule.rule_id}: {rule.message}" + (f"\n      fix: {rule.fix}" if rule.fix else ""))


Scenario = Callable[[Federation, dict[str, int]], dict[str, Any]]


def _jobs(ds: dict[str, int]) -> list[tuple[str, dict[str, Any]]]:
    bank, lost, telco = ds["bank_customers"], ds["bank_lost_contacts"], ds["telco_subscribers"]
    return [
        ("audience overlap: bank customers who are telco subscribers aged 25-45 without the bank's app", {
            "kind": "audience_overlap", "purpose": "app_promotion", "title": "App promotion audience (count)",
            "inputs": [{"dataset_id": bank, "key_fields": ["id_number"]},
                       {"dataset_id": telco, "key_fields": ["id_number"],
                        "filter": "app_bank == 0 and age >= 25 and age <= 45"}],
            "params": {"output_mode": "count", "min_cell": 50},
        }),
        ("lost-contact recovery (reveal mode, capped, consent-bound)", {
            "kind": "recovery", "purpose": "recovery", "title": "Recover current numbers of lost customers",
            "inputs": [{"dataset_id": lost, "key_fields": ["id_number", "imei", "idfa", "mac"],
                        "consent_field": "consent_recovery"},
                       {"dataset_id": telco, "key_fields": ["id_number", "imei", "idfa", "mac"],
                        "output_fields": ["msisdn"]}],
            "params": {"output_mode": "reveal", "match_cap": 5000},
        }),
        ("credit-risk model (hetero logistic regression)", {
            "kind": "train_risk", "purpose": "risk", "title": "Default risk, bank + telco features",
            "inputs": [{"dataset_id": bank, "key_fields": ["id_number"], "label_field": "default_flag",
                        "feature_fields": ["balance", "products_held", "monthly_txn_count", "monthly_txn_amount",
                                           "repay_overdue_12m", "credit_limit"]},
                       {"dataset_id": telco, "key_fields": ["id_number"],
                        "feature_fields": ["tenure_months", "arpu", "data_usage_gb", "night_usage_ratio",
                                           "app_competitor", "business_trips_90d"]}],
            "params": {"output_mode": "model"},  # LR settings: LrConfig.recommended (6 Newton iterations)
        }),
        ("wealth-product propensity model (SecureBoost)", {
            "kind": "train_propensity", "purpose": "propensity", "title": "Wealth purchase, bank + telco features",
            "inputs": [{"dataset_id": bank, "key_fields": ["id_number"], "label_field": "wealth_purchase",
                        "feature_fields": ["age", "balance", "products_held", "monthly_txn_count",
                                           "monthly_txn_amount", "credit_limit"]},
                       {"dataset_id": telco, "key_fields": ["id_number"],
                        "feature_fields": ["tenure_months", "arpu", "data_usage_gb", "app_wealth", "app_bank",
                                           "app_shopping", "business_trips_90d"]}],
            "params": {"output_mode": "model", "trees": 10, "max_depth": 3},
        }),
    ]


def _denied_job(ds: dict[str, int]) -> dict[str, Any]:
    """A recovery that tries to use an identifier as a feature and to reveal numbers without consent."""
    return {
        "kind": "recovery", "purpose": "recovery", "title": "Reveal numbers, no consent (must be denied)",
        "inputs": [{"dataset_id": ds["bank_lost_contacts"], "key_fields": ["id_number"],
                    "feature_fields": ["imei"]},
                   {"dataset_id": ds["telco_subscribers"], "key_fields": ["id_number"],
                    "output_fields": ["msisdn"]}],
        "params": {"output_mode": "reveal"},
    }


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


def _setup(fed: Federation, data_dir: Path, governance: Path) -> None:
    names = {"bank": ["bank_customers", "bank_lost_contacts"], "telco": ["telco_subscribers"]}
    register_datasets(fed, {party: [(data_dir / f"{n}.csv", governance / f"{n}.yaml") for n in sets]
                            for party, sets in names.items()})


def _start_nodes(fed: Federation) -> None:
    for party in ("bank", "telco"):
        fed.group.start(f"{party}-node", [_script(f"tandem-{party}"), "-v", "serve"], fed.node_env[party])
    for party in ("bank", "telco"):
        port = fed.node_env[party][f"TANDEM_{party.upper()}_LISTEN_PORT"]
        cert = fed.state / party / "tls" / "cert.pem"
        wait_until(_alive_and(fed.group, functools.partial(_node_up, port, cert)), timeout=60,
                   what=f"the {party} node on port {port}")


def _node_up(port: str, cert: Path) -> bool:
    import socket

    with socket.create_connection(("127.0.0.1", int(port)), timeout=1.0):
        return True


def _run_jobs(fed: Federation) -> list[JobPublic]:
    ds = _datasets(fed)
    _say("6/8 A job that policy denies")
    denied = _submit(fed, _denied_job(ds))
    print(f"   job {denied.id}: status {denied.status}")
    _print_decision(denied)
    done: list[JobPublic] = []
    for i, (what, body) in enumerate(_jobs(ds), start=1):
        _say(f"7/8 Job {i}: {what}")
        job = _submit(fed, body)
        if job.status == JobStatus.REJECTED:
            print(f"   job {job.id} rejected by policy:")
            _print_decision(job)
            continue
        print(f"   job {job.id} pending approval by: {', '.join(job.required_approvals)}")
        _approve(fed, job)
        job = _wait_job(fed, job.id)
        if job.kind in _PSI_KINDS:
            _print_psi(fed, job)
        elif job.kind in _TRAIN_KINDS:
            _print_training(fed, job)
        else:
            print(f"   outputs: {json.dumps(job.outputs, indent=None)[:600]}")
        done.append(job)
    risk = [j for j in done if j.kind == "train_risk" and j.status == JobStatus.SUCCEEDED]
    if risk:
        done.append(_score_with(fed, ds, risk[0]))
        _score_in_real_time(fed, risk[0])
    return done


def _score_with(fed: Federation, ds: dict[str, int], model_job: JobPublic) -> JobPublic:
    """A batch ``score`` job over the bank's customers with the model of ``model_job``; print its outputs."""
    _say("7/8 Batch scoring: every bank customer with the credit-risk model (job kind score)")
    job = _submit(fed, {
        "kind": "score", "purpose": "scoring", "title": f"Score bank customers with the model of job {model_job.id}",
        "inputs": [{"dataset_id": ds["bank_customers"], "key_fields": ["id_number"]},
                   {"dataset_id": ds["telco_subscribers"], "key_fields": ["id_number"]}],
        "params": {"output_mode": "scores", "model_job_id": model_job.id},
    })
    print(f"   job {job.id} pending approval by: {', '.join(job.required_approvals)}")
    _approve(fed, job)
    job = _wait_job(fed, job.id)
    bank = job.outputs.get("bank", {})
    if job.status == JobStatus.SUCCEEDED:
        print(f"   bank: {bank.get('rows')} rows scored with model {bank.get('model_id')}: {bank.get('scored')} with "
              f"telco data, {bank.get('no_telco_data')} no_telco_data (bank-only fallback), "
              f"{bank.get('without_score')} without a score")
        print(f"   score deciles: {bank.get('score_deciles')}")
        print(f"   telco: {json.dumps(job.outputs.get('telco', {}))}; "
              f"the scores themselves stay at the bank: {fed.state / 'bank' / 'jobs' / str(job.id) / 'scores.csv'}")
    else:
        print(f"   job {job.id}: {job.status}: {job.status_detail}")
    trail = _job_trail(fed, job.id)
    print(f"   audit trail: {len(trail)} events (" + ", ".join(sorted({e['action'] for e in trail})) + ")")
    return job


def _score_in_real_time(fed: Federation, model_job: JobPublic) -> None:
    """Call the bank node's real-time scoring API for a telco subscriber and for a customer who is not one."""
    import csv

    _say("7/8 Real-time scoring API on the bank node (POST /score/v1/{model_id}, loopback, bearer key)")
    data = fed.state / "data"
    with (data / "telco_subscribers.csv").open() as f:
        subscribers = {row["id_number"] for row in csv.DictReader(f)}
    with (data / "bank_customers.csv").open() as f:
        customers = [(row["customer_id"], row["id_number"] in subscribers) for row in csv.DictReader(f)]
    known = next(c for c, subscribed in customers if subscribed)
    unknown = next(c for c, subscribed in customers if not subscribed)
    env = fed.node_env["bank"]
    url = f"http://127.0.0.1:{env['TANDEM_BANK_SCORING_PORT']}/score/v1/m{model_job.id}"
    headers = {"Authorization": f"Bearer {env['TANDEM_BANK_SCORING_API_KEY']}"}
    print("   (the demo knows from its synthetic population who has a telco line; the bank does not;"
          " the first call loads the model at both nodes)")
    with httpx.Client(timeout=30.0, headers=headers) as c:
        for who, customer in (("a telco subscriber", known), ("not a telco subscriber", unknown)):
            r = c.post(url, json={"customer_id": customer})
            print(f"   {who}, {customer}: HTTP {r.status_code} {r.text}")


_PSI_KINDS = {"audience_overlap", "recovery"}
_TRAIN_KINDS = {"train_risk", "train_propensity"}
_RUN_END = {"training.run_finished", "training.run_failed"}


def _print_training(fed: Federation, job: JobPublic) -> None:
    """A training job's held-out metrics (federated vs bank-only), figures, model parts, Flower rounds, audit."""
    bank = job.outputs.get("bank", {})
    if "auc_federated" in bank:
        print(f"   held-out AUC: federated {bank['auc_federated']:.3f} vs bank-only {bank['auc_bank_only']:.3f}; "
              f"KS: federated {bank['ks_federated']:.3f} vs bank-only {bank['ks_bank_only']:.3f} "
              f"({int(bank.get('n_train', 0))} training / {int(bank.get('n_test', 0))} held-out aligned rows)")
        for name in bank.get("figures", []):
            print(f"   figure: {fed.state / 'bank' / name}")
    for party in ("bank", "telco"):
        card = fed.state / party / "models" / str(job.id) / "card.json"
        print(f"   {party} model part + card: {card.parent if card.exists() else '(none stored)'}")
    trail = _job_trail(fed, job.id)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(e["action"] in _RUN_END for e in trail):
        time.sleep(0.5)  # the launcher audits the ServerApp's report a moment after the nodes' results
        trail = _job_trail(fed, job.id)
    runs = [e for e in trail if e["action"].startswith("training.run_")]
    for e in runs:
        shown = {k: v for k, v in e["details"].items() if k != "summary"}
        print(f"   {e['action']} (Flower round trips for this job: {shown.get('rounds', '-')}): {json.dumps(shown)}")
    print(f"   audit trail: {len(trail)} events (" + ", ".join(sorted({e['action'] for e in trail})) + ")")
_PSI_KEYS = ("overlap", "telco_set_size", "k", "epsilon", "hits_by_key", "conflicts", "recovered", "relayed",
             "not_queried_cap", "excluded_no_consent", "invalid_identifiers", "telco_evaluations", "bytes_to_peer",
             "bytes_from_peer", "filtered_out", "tables", "oprf_evaluations", "evaluation_cap")


def _job_trail(fed: Federation, job_id: int) -> list[dict[str, Any]]:
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


def _print_psi(fed: Federation, job: JobPublic) -> None:
    """A PSI job's outputs (counts only, per party), its row-level results kept at the bank, its audit trail."""
    for party, outputs in sorted(job.outputs.items()):
        shown = {k: outputs[k] for k in _PSI_KEYS if k in outputs}
        print(f"   {party} reported: {json.dumps(shown)[:700]}")
    if job.status == JobStatus.SUCCEEDED:
        listing = fed.node("bank", "psi-results", str(job.id), "--limit", "3", check=False).strip()
        print("   kept at the bank node (tandem-bank psi-results): " + listing.replace("\n", "\n   "))
    trail = _job_trail(fed, job.id)
    steps = [f"{e['action']}({e['details'].get('party', e['actor'])}"
             + (f" {e['details']['stage']}" if "stage" in e["details"] else "")
             + (f" {e['details']['status']}" if "status" in e["details"] and e["action"] == "job.result" else "") + ")"
             for e in trail]
    print(f"   audit trail ({len(trail)} events): " + "; ".join(steps)[:1500])


def _verify(fed: Federation) -> None:
    import subprocess

    _say("8/8 Audit: export and verify offline; node ledgers")
    export = fed.state / "audit.jsonl"
    with fed.api("compliance") as c, export.open("wb") as f:
        with c.stream("GET", "/audit/export") as r:
            r.raise_for_status()
            for chunk in r.iter_bytes():
                f.write(chunk)
        key = c.get("/audit/public-key").json()["public_key"]
    (fed.state / "coordinator_public.key").write_text(key + "\n")
    proc = subprocess.run([_script("tandem-coordinator"), "audit", "verify", str(export), "--key", key],
                          capture_output=True, text=True)
    print("   " + (proc.stdout + proc.stderr).strip())
    if proc.returncode != 0:
        raise RuntimeError("the exported audit chain did not verify")
    for party in ("bank", "telco"):
        print(f"   {party} egress ledger: " + fed.node(party, "ledger", "verify").strip())


def _training_env(state: Path, test_key_bits: int | None) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """TLS for the SuperLink and each node's SuperNode key, and the environment that points everyone at them."""
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


def run(n: int, seed: int, state: Path, test_key_bits: int | None = None) -> int:
    """Run the whole demo; returns a process exit code."""
    from demo.synthetic import generate

    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    _say("1/8 Generating the synthetic population", f"{n:,} people, seed {seed} -> {state / 'data'}")
    generate(state / "data", n=n, seed=seed)
    group = ProcessGroup(state / "logs")
    with group.running():
        _say("2/8 Starting the coordinator (with its Flower SuperLink)")
        training, node_training = _training_env(state, test_key_bits)
        coord_url, bootstrap = _start_coordinator(state, group, training)
        print(f"   {coord_url} (SQLite {state / 'coordinator.db'})")
        _say("3/8 Creating users (bank admin+analyst, telco admin+operator, compliance auditor)")
        auditor_key = SigningKey.generate()
        tokens = _create_users(coord_url, bootstrap, auditor_key)
        node_env = {p: {**_node_env(state, coord_url, p, tokens[f"{p}-admin"]), **node_training[p]}
                    for p in ("bank", "telco")}
        fed = Federation(state, coord_url, tokens, auditor_key, node_env, group)
        _say("4/8 Nodes: keys, certificates, party registration, datasets (schemas and coarse stats only)")
        _setup(fed, state / "data", Path(__file__).parent / "governance")
        _say("5/8 Starting the bank and telco node services (mutual TLS data plane) and their Flower SuperNodes")
        _start_nodes(fed)
        _run_jobs(fed)
        _verify(fed)
    export, key = state / "audit.jsonl", state / "coordinator_public.key"
    _say("Done. Where to look",
         f"logs: {state / 'logs'}\n   audit export: {export}"
         f"\n   verify it yourself: tandem-coordinator audit verify {export} --key $(cat {key})"
         f"\n   node state and ledgers: {state / 'bank'}, {state / 'telco'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m demo`` / ``tandem-demo``."""
    p = argparse.ArgumentParser(prog="tandem-demo", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000, help="people in the synthetic population (default 20,000)")
    p.add_argument("--seed", type=int, default=7, help="seed of the generator (default 7)")
    p.add_argument("--state", type=Path, default=Path(".tandem/demo"), help="where everything is written")
    p.add_argument("--test-key-bits", type=int, default=None,
                   help="TEST ONLY: Paillier keys of this many bits instead of 2048 (insecure, faster)")
    args = p.parse_args(argv)
    try:
        return run(args.n, args.seed, args.state.resolve(), args.test_key_bits)
    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
        print(f"\nDEMO FAILED: {exc}\n   logs: {args.state / 'logs'}", file=sys.stderr)
        return 1
