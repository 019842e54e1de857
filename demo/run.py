"""The one-command demo: a whole federation on loopback, from synthetic data to a verified audit chain.

Steps: generate a seeded population; start the coordinator, the bank node and the telco node as
separate processes; create users; each node creates its keys and certificate and registers its party
and datasets (schemas only); a job that policy denies (and why); jobs approved by Ed25519 signatures
and run by the nodes; finally the audit chain is exported and verified offline, and the node ledgers
are verified.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from demo.marketing import run_marketing
from demo.processes import ProcessGroup
from demo.scenario import demo_jobs, denied_job, score_job, site_selection_job
from demo.steps import (
    Federation,
    approve,
    create_users,
    datasets,
    job_trail,
    node_env,
    register_demo_datasets,
    script,
    start_coordinator,
    start_nodes,
    submit,
    training_env,
    wait_job,
)
from protocols.crypto.signing import SigningKey
from protocols.wire.control import JobPublic, JobStatus

__all__ = ["main", "run"]

_PSI_KINDS = {"audience_overlap", "recovery"}
_TRAIN_KINDS = {"train_risk", "train_propensity"}
_RUN_END = {"training.run_finished", "training.run_failed"}
_PSI_KEYS = ("overlap", "telco_set_size", "k", "epsilon", "hits_by_key", "conflicts", "recovered", "relayed",
             "not_queried_cap", "excluded_no_consent", "invalid_identifiers", "telco_evaluations", "bytes_to_peer",
             "bytes_from_peer", "filtered_out", "tables", "oprf_evaluations", "evaluation_cap")


def _say(step: str, text: str = "") -> None:
    print(f"\n== {step}" + (f"\n   {text}" if text else ""), flush=True)


def _print_decision(job: JobPublic) -> None:
    for rule in job.decision.rules:
        if not rule.allowed:
            print(f"   DENIED by {rule.rule_id}: {rule.message}" + (f"\n      fix: {rule.fix}" if rule.fix else ""))


def _run_jobs(fed: Federation, n: int) -> list[JobPublic]:
    ds = datasets(fed)
    _say("6/8 A job that policy denies")
    denied = submit(fed, denied_job(ds))
    print(f"   job {denied.id}: status {denied.status}")
    _print_decision(denied)
    done: list[JobPublic] = []
    for i, (what, body) in enumerate(demo_jobs(ds), start=1):
        _say(f"7/8 Job {i}: {what}")
        job = submit(fed, body)
        if job.status == JobStatus.REJECTED:
            print(f"   job {job.id} rejected by policy:")
            _print_decision(job)
            continue
        print(f"   job {job.id} pending approval by: {', '.join(job.required_approvals)}")
        approve(fed, job)
        job = wait_job(fed, job.id)
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
    done.append(_select_sites(fed, ds, n))
    done += run_marketing(fed, _say)  # issue 12: campaign, evaluation, retention
    return done


def _select_sites(fed: Federation, ds: dict[str, int], n: int) -> JobPublic:
    """A ``site_selection`` job: the telco releases noised demand per cell, the bank ranks sites and draws maps.

    From 10,000 people on, the city fills resolution-6 cells (≈ 36 km²); smaller demos pool into resolution 5.
    """
    _say("7/8 Branch site selection: telco home/work demand per H3 cell (k-suppressed, ε-noised) -> bank")
    job = submit(fed, site_selection_job(ds, pool_resolution=6 if n >= 10_000 else 5))
    if job.status == JobStatus.REJECTED:
        print(f"   job {job.id} rejected by policy:")
        _print_decision(job)
        return job
    print(f"   job {job.id} pending approval by: {', '.join(job.required_approvals)}")
    approve(fed, job)
    job = wait_job(fed, job.id)
    if job.status == JobStatus.SUCCEEDED:
        _print_sites(fed, job)
    else:
        print(f"   job {job.id}: {job.status}: {job.status_detail}")
    _print_trail(job_trail(fed, job.id))
    return job


def _print_trail(trail: list[dict[str, Any]]) -> None:
    """How many audit events a job left, and of which actions."""
    print(f"   audit trail: {len(trail)} events (" + ", ".join(sorted({e['action'] for e in trail})) + ")")


def _print_sites(fed: Federation, job: JobPublic) -> None:
    """The telco's counts, the bank's ranked sites and coverage, and where the maps are."""
    telco, bank = job.outputs.get("telco", {}), job.outputs.get("bank", {})
    print(f"   telco released (k={telco.get('k')}, epsilon {telco.get('epsilon_spent')}): cells "
          f"{telco.get('cells_released')}, pooled into parents {telco.get('cells_pooled')}; rows refused for "
          f"{telco.get('refusal_reasons')}")
    print(f"   bank: {bank.get('cells_received')} released cells ({bank.get('cells_pooled')} pooled), "
          f"{bank.get('existing_branches')} existing branches, {bank.get('n_sites')} new sites within "
          f"{bank.get('radius_km')} km: coverage {bank.get('coverage_before', 0):.1%} -> "
          f"{bank.get('coverage_after', 0):.1%}; MILP check {json.dumps(bank.get('milp'))}")
    for site in bank.get("sites", [])[:5]:
        print(f"   site {site['rank']}: {site['cell']} ({site['lat']:.4f}, {site['lng']:.4f}) demand "
              f"{site['demand']:.0f}, gain {site['gain']:.0f}, nearest branch {site['nearest_branch_km']} km")
    for name, rel in bank.get("files", {}).items():
        print(f"   {name}: {fed.state / 'bank' / rel}")


def _score_with(fed: Federation, ds: dict[str, int], model_job: JobPublic) -> JobPublic:
    """A batch ``score`` job over the bank's customers with the model of ``model_job``; print its outputs."""
    _say("7/8 Batch scoring: every bank customer with the credit-risk model (job kind score)")
    job = submit(fed, score_job(ds, model_job.id))
    print(f"   job {job.id} pending approval by: {', '.join(job.required_approvals)}")
    approve(fed, job)
    job = wait_job(fed, job.id)
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
    _print_trail(job_trail(fed, job.id))
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
    trail = job_trail(fed, job.id)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(e["action"] in _RUN_END for e in trail):
        time.sleep(0.5)  # the launcher audits the ServerApp's report a moment after the nodes' results
        trail = job_trail(fed, job.id)
    runs = [e for e in trail if e["action"].startswith("training.run_")]
    for e in runs:
        shown = {k: v for k, v in e["details"].items() if k != "summary"}
        print(f"   {e['action']} (Flower round trips for this job: {shown.get('rounds', '-')}): {json.dumps(shown)}")
    _print_trail(trail)


def _print_psi(fed: Federation, job: JobPublic) -> None:
    """A PSI job's outputs (counts only, per party), its row-level results kept at the bank, its audit trail."""
    for party, outputs in sorted(job.outputs.items()):
        shown = {k: outputs[k] for k in _PSI_KEYS if k in outputs}
        print(f"   {party} reported: {json.dumps(shown)[:700]}")
    if job.status == JobStatus.SUCCEEDED:
        listing = fed.node("bank", "psi-results", str(job.id), "--limit", "3", check=False).strip()
        print("   kept at the bank node (tandem-bank psi-results): " + listing.replace("\n", "\n   "))
    trail = job_trail(fed, job.id)
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
    proc = subprocess.run([script("tandem-coordinator"), "audit", "verify", str(export), "--key", key],
                          capture_output=True, text=True)
    print("   " + (proc.stdout + proc.stderr).strip())
    if proc.returncode != 0:
        raise RuntimeError("the exported audit chain did not verify")
    for party in ("bank", "telco"):
        print(f"   {party} egress ledger: " + fed.node(party, "ledger", "verify").strip())


def run(n: int, seed: int, state: Path, test_key_bits: int | None = None, engine: str = "pool") -> int:
    """Run the whole demo; returns a process exit code (``engine``: the telco node's per-record engine)."""
    from demo.synthetic import generate

    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    _say("1/8 Generating the synthetic population", f"{n:,} people, seed {seed} -> {state / 'data'}")
    generate(state / "data", n=n, seed=seed)
    group = ProcessGroup(state / "logs")
    with group.running():
        _say("2/8 Starting the coordinator (with its Flower SuperLink)")
        training, node_training = training_env(state, test_key_bits)
        coord_url, bootstrap = start_coordinator(state, group, training)
        print(f"   {coord_url} (SQLite {state / 'coordinator.db'})")
        _say("3/8 Creating users (bank admin+analyst, telco admin+operator, compliance auditor)")
        auditor_key = SigningKey.generate()
        tokens = create_users(coord_url, bootstrap, auditor_key)
        envs = {p: {**node_env(state, coord_url, p, tokens[f"{p}-admin"], [auditor_key.public_hex]),
                    **node_training[p]}
                for p in ("bank", "telco")}
        envs["telco"]["TANDEM_TELCO_ENGINE"] = engine  # serial | pool | spark (node setting ``engine``)
        # The campaign goes to the embedded outbox: no quiet hours (the demo runs at any hour), no SMSC pacing.
        envs["telco"] |= {"TANDEM_CHANNEL_QUIET_HOURS": "", "TANDEM_CHANNEL_RATE_PER_S": "1000"}
        fed = Federation(state, coord_url, tokens, auditor_key, envs, group)
        _say("4/8 Nodes: keys, certificates, party registration, datasets (schemas and coarse stats only)")
        register_demo_datasets(fed, state / "data")
        _say("5/8 Starting the bank and telco node services (mutual TLS data plane) and their Flower SuperNodes")
        start_nodes(fed)
        _run_jobs(fed, n)
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
    p.add_argument("--engine", choices=["serial", "pool", "spark"], default="pool",
                   help="where the telco node runs its per-record PSI work (spark: Spark local[2], needs Java)")
    args = p.parse_args(argv)
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the process group is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run(args.n, args.seed, args.state.resolve(), args.test_key_bits, args.engine)
    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
        print(f"\nDEMO FAILED: {exc}\n   logs: {args.state / 'logs'}", file=sys.stderr)
        return 1

