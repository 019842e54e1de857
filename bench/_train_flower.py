"""The Flower runtime of ``bench/train_bench.py``: one training job through the real federation.

Starts the topology the demo starts, as local processes under ``state``: the coordinator (whose
TrainingLauncher starts the SuperLink and one ServerApp run per job), the bank node and the telco node,
each with its SuperNode. Registers the guest half of the data (with the label) as the bank's dataset
and the host half as the telco's, submits a ``train_risk`` (LR) or ``train_propensity``
(SecureBoost) job, approves it with both parties' signatures, waits, and reads what the job and the
federation recorded: the bank's held-out metrics, the ServerApp's round count and relayed bytes (the
``training.run_finished`` audit event), both nodes' egress ledgers, and the CPU and peak RSS of every
process (:mod:`_proc_meter`).

The key mapping that makes the job hold out the benchmark's test rows: a training job aligns both
parties' rows by PSI on one key field and orders the shared rows by their canonical key value; its
held-out positions are a permutation seeded by the job digest
(:func:`node.jobs.training.alignment.split_rows`). The FATE files' integer ``id`` is written as a
``customer_id`` key ``r<position>`` (zero-padded) once the digest is known (after submission, before
approval; the catalog holds only the schema, which does not change), the positions chosen so that
the job's held-out rows are exactly the benchmark's test rows. The same bijection is applied to both
files, so PSI still matches every row.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _proc_meter import ProcessTreeMeter, cpu_delta

from demo import steps as demo
from demo.processes import ProcessGroup
from node.jobs.training.alignment import split_rows
from node.ledger import EgressLedger
from node.node_db import NODE_DB
from protocols.crypto.signing import SigningKey
from protocols.wire.control import JobPublic, JobStatus

__all__ = ["FlowerJob", "aligned_keys", "ledger_bytes", "run_flower_job", "sent_to"]

GOVERNANCE = Path(__file__).resolve().parent / "governance" / "default_credit"
_DATASETS = {"bank": "default_credit_bank", "telco": "default_credit_telco"}


@dataclass(frozen=True)
class FlowerJob:
    """What to train through Flower."""

    algo: str
    """``lr`` (job kind ``train_risk``) or ``secureboost`` (``train_propensity``)."""
    key_bits: int
    """Paillier modulus; below 2048 the whole federation runs with the test-only flag (insecure)."""
    iterations: int | None
    """LR iterations (None: the job kind's default)."""
    trees: int
    depth: int
    timeout: float = 3600.0


def _job_body(job: FlowerJob, datasets: dict[str, int], bank_features: Sequence[str],
              telco_features: Sequence[str]) -> dict[str, Any]:
    lr = job.algo == "lr"
    params: dict[str, Any] = {"output_mode": "model"}
    if lr and job.iterations:
        params["iterations"] = job.iterations
    if not lr:
        params |= {"trees": job.trees, "max_depth": job.depth}
    return {
        "kind": "train_risk" if lr else "train_propensity", "purpose": "risk" if lr else "propensity",
        "title": f"default_credit benchmark ({job.algo}, {job.key_bits}-bit)",
        "inputs": [{"dataset_id": datasets[_DATASETS["bank"]], "key_fields": ["id"], "label_field": "y",
                    "feature_fields": list(bank_features)},
                   {"dataset_id": datasets[_DATASETS["telco"]], "key_fields": ["id"],
                    "feature_fields": list(telco_features)}],
        "params": params,
    }


def aligned_keys(digest: str, train_ids: np.ndarray, test_ids: np.ndarray) -> dict[int, str]:
    """``id -> customer_id key`` such that a job with ``digest`` holds out exactly ``test_ids``.

    Raises:
        ValueError: the job would hold out another number of rows than ``len(test_ids)``.
    """
    n = len(train_ids) + len(test_ids)
    train_pos, test_pos = split_rows(n, digest)
    if len(test_pos) != len(test_ids):
        raise ValueError(f"the job holds out {len(test_pos)} of {n} rows, the benchmark {len(test_ids)}")
    width = len(str(n))
    keys = {int(i): f"r{p:0{width}d}" for i, p in zip(np.sort(train_ids), train_pos, strict=True)}
    keys |= {int(i): f"r{p:0{width}d}" for i, p in zip(np.sort(test_ids), test_pos, strict=True)}
    return keys


def _write(frame: pd.DataFrame, keys: dict[int, str], path: Path) -> None:
    out = frame.copy()
    out["id"] = out["id"].map(keys)
    tmp = path.with_suffix(".tmp")
    out.to_csv(tmp, index=False)
    tmp.replace(path)


def _federation(state: Path, group: ProcessGroup, key_bits: int) -> demo.Federation:
    training, node_training = demo.training_env(state, key_bits if key_bits < 2048 else None)
    coord_url, bootstrap = demo.start_coordinator(state, group, training)
    auditor = SigningKey.generate()
    tokens = demo.create_users(coord_url, bootstrap, auditor)
    env = {p: {**demo.node_env(state, coord_url, p, tokens[f"{p}-admin"], [auditor.public_hex]),
               **node_training[p]}
           for p in ("bank", "telco")}
    return demo.Federation(state, coord_url, tokens, auditor, env, group)


def _run_summary(fed: demo.Federation, job_id: int, timeout: float = 60.0) -> dict[str, Any]:
    """Details of the job's ``training.run_finished`` audit event (the launcher audits it shortly after)."""
    deadline = time.monotonic() + timeout
    while True:
        events = [e for e in demo.job_trail(fed, job_id) if e["action"] == "training.run_finished"]
        if events:
            details: dict[str, Any] = events[-1]["details"]
            return details
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.5)


def ledger_bytes(state: Path, job_id: int) -> dict[str, dict[str, int]]:
    """Bytes each node's egress ledger recorded for ``job_id``: ``{party: {"<peer> <kind>": bytes}}``."""
    out: dict[str, dict[str, int]] = {}
    for party in ("bank", "telco"):
        ledger = EgressLedger(state / party / NODE_DB)
        try:
            sent: dict[str, int] = {}
            for rec in ledger.records():
                if rec.body.get("job_id") == job_id:
                    key = f"{rec.body['peer']} {rec.body['kind']}"
                    sent[key] = sent.get(key, 0) + int(rec.body["bytes"])
        finally:
            ledger.close()
        out[party] = dict(sorted(sent.items()))
    return out


def sent_to(ledgers: dict[str, dict[str, int]], party: str, peer: str) -> int:
    """Bytes ``party`` sent to ``peer`` for the job (every kind)."""
    return sum(n for key, n in ledgers.get(party, {}).items() if key.split(" ", 1)[0] == peer)


def run_flower_job(job: FlowerJob, guest: pd.DataFrame, host: pd.DataFrame, train_ids: np.ndarray,
                   test_ids: np.ndarray, state: Path) -> dict[str, Any]:
    """Run ``job`` through the federation over the rows ``train_ids`` + ``test_ids``; return its figures.

    ``guest`` holds ``id``, ``y`` and the bank's features, ``host`` ``id`` and the telco's. The state
    directory is wiped first and keeps every log, node state and ledger afterwards.
    """
    if state.exists():
        shutil.rmtree(state)
    data = state / "data"
    data.mkdir(parents=True)
    rows = np.concatenate([train_ids, test_ids])
    guest, host = guest[guest["id"].isin(rows)], host[host["id"].isin(rows)]
    files = {"bank": data / f"{_DATASETS['bank']}.csv", "telco": data / f"{_DATASETS['telco']}.csv"}
    placeholder = {int(i): f"r{i}" for i in rows}
    _write(guest, placeholder, files["bank"])
    _write(host, placeholder, files["telco"])
    group = ProcessGroup(state / "logs")
    with ProcessTreeMeter() as meter, group.running():
        fed = _federation(state, group, job.key_bits)
        demo.register_datasets(fed, {p: [(files[p], GOVERNANCE / f"{name}.yaml")] for p, name in _DATASETS.items()})
        demo.start_nodes(fed)
        features = ([c for c in guest.columns if c not in ("id", "y")], [c for c in host.columns if c != "id"])
        submitted = demo.submit(fed, _job_body(job, demo.datasets(fed), *features))
        if submitted.status == JobStatus.REJECTED:
            raise RuntimeError(f"policy rejected the job: {submitted.decision.model_dump_json()}")
        keys = aligned_keys(submitted.digest, train_ids, test_ids)
        _write(guest, keys, files["bank"])
        _write(host, keys, files["telco"])
        approve_start = time.perf_counter()
        demo.approve(fed, submitted)
        t0, cpu0 = time.perf_counter(), meter.cpu()
        done = demo.wait_job(fed, submitted.id, timeout=job.timeout)
        t1, cpu1 = time.perf_counter(), meter.cpu()
        if done.status != JobStatus.SUCCEEDED:
            raise RuntimeError(f"job {done.id} {done.status}: {done.status_detail}")
        summary = _run_summary(fed, done.id)
        figures = _figures(done, summary, cpu_delta(cpu0, cpu1), t1 - t0, len(test_ids))
        ledgers = ledger_bytes(state, done.id)
        figures |= {"approval_s": t0 - approve_start, "bytes_by_ledger": ledgers,
                    "bytes_bank_to_telco": sent_to(ledgers, "bank", "telco"),
                    "bytes_telco_to_bank": sent_to(ledgers, "telco", "bank"),
                    "bytes_nodes_to_coordinator": sum(sent_to(ledgers, p, "coordinator") for p in ("bank", "telco")),
                    "peak_rss_mb_by_process": meter.peak_rss_mb(), "processes_by_role": meter.process_counts(),
                    "state_dir": str(state), "job_id": done.id, "subreaper": meter.subreaper}
    return figures


def _figures(done: JobPublic, run: dict[str, Any], cpu: dict[str, float], wall: float, n_test: int) -> dict[str, Any]:
    bank, telco = done.outputs.get("bank", {}), done.outputs.get("telco", {})
    if int(bank.get("n_test", -1)) != n_test:
        raise RuntimeError(f"the job held out {bank.get('n_test')} rows, the benchmark {n_test}: key mapping broken")
    summary = run.get("summary", {}) if isinstance(run.get("summary"), dict) else {}
    relayed = summary.get("relayed_bytes", {})
    return {
        "ours_wall_s": wall,
        "ours_cpu_s": sum(cpu.values()),
        "cpu_s_by_process": cpu,
        "auc": float(bank["auc_federated"]),
        "ks": float(bank["ks_federated"]),
        "job_bank_only_auc": bank.get("auc_bank_only"),
        "job_bank_only_ks": bank.get("ks_bank_only"),
        "n_train": bank.get("n_train"),
        "n_test": bank.get("n_test"),
        "round_trips": run.get("rounds"),
        "round_trips_note": "Flower rounds of the job's ServerApp run (training.run_finished audit event)",
        "bytes_relayed": relayed.get("total"),
        "bytes_relayed_detail": relayed,
        "iterations": summary.get("iterations"),
        "trees_grown": summary.get("trees"),
        "flower_rounds_at_bank": bank.get("flower_rounds_here"),
        "flower_rounds_at_telco": telco.get("flower_rounds_here"),
    }
