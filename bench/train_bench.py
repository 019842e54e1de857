"""Benchmark federated training on default_credit against centralised baselines and FATE 2.2.

    .venv/bin/python bench/train_bench.py --algo lr|secureboost [--runtime flower|inprocess|both]
        [--json PATH] [--bits 2048] [--rows N] [--state DIR]
        LR:          [--iterations N]   (Flower: the train_risk job's default when not given)
                     inprocess only: [--batch 0 --alpha 0.0001 --gradient linearized --optimizer newton ...]
        SecureBoost: [--trees 30 --depth 3 --bins 32]

Data: FATE's default_credit files shipped in demo/data/fate/ (PROVENANCE.md there): the guest half (13
features and the label ``y``) is the bank's, the host half (10 features) the telco's; both share an
integer ``id`` (full overlap). Split: 70/30 stratified on y, random_state=42 (``--rows N`` first
draws a stratified subset of N rows, for quick runs).

Runtimes:
    * ``flower`` (default): the real job path (:mod:`_train_flower`): coordinator, SuperLink, one
      ServerApp run, bank and telco node processes with their SuperNodes, all local processes under
      ``--state`` (default ``.tandem/train_bench``). The bench registers the two halves as the nodes'
      datasets (governance: ``bench/governance/default_credit/``), submits a ``train_risk`` (LR) or
      ``train_propensity`` (SecureBoost) job, approves it with both parties' signatures and reads the
      outputs. Key mapping: ``id`` becomes a ``customer_id`` key (PSI aligns on it), written so that
      the job's digest-seeded held-out rows are exactly the benchmark's test rows (details in
      :mod:`_train_flower`); the held-out AUC/KS the job reports are therefore on the same split as
      the baselines. SecureBoost bins are the job's (32; no job parameter).
    * ``inprocess``: the in-process driver (``protocols.vfl.run_local_*``): every party in this
      process plus ``--workers`` Paillier worker processes per party; every message still goes
      through its JSON wire form. For comparison and debugging.
    * ``both``: inprocess, then flower; both tables; the JSON is the flower run's with the inprocess
      run's figures under ``inprocess``.

Reported costs (Flower):
    * ``ours_wall_s``: from the moment both approvals are in to the job's ``succeeded`` (polled every
      0.5 s): alignment (PSI), training, held-out evaluation, model storage.
    * ``ours_cpu_s``: user + system CPU of ALL processes of the federation in that window (coordinator,
      SuperLink, SuperExec, ServerApp, both nodes, SuperNodes, ClientApp processes, Paillier workers),
      sampled with psutil over this process's tree, counting processes that exit (:mod:`_proc_meter`);
      ``cpu_s_by_process`` splits it by role.
    * ``peak_rss_mb_by_process``: the largest peak RSS of one process of each role.
    * ``round_trips``: Flower rounds of the job's ServerApp run (from the coordinator's audit event);
      ``bytes_relayed``: round payload bytes through the ServerApp, both directions.
    * ``bytes_bank_to_telco`` / ``bytes_telco_to_bank``: the data plane as the nodes' egress ledgers
      record it (PSI alignment, per-round ciphertexts, evaluation); ``bytes_by_ledger`` by kind.
    * ``load_avg_*``: 1/5/15-minute load averages before and after (2 cores are shared with other work:
      wall time is inflated when the load exceeds the core count; CPU-seconds are not).

Reported costs (inprocess): wall and CPU of this process and its reaped workers (``getrusage``),
message bytes in the binary codec and as base64 JSON, the round trips the job would need, and
``idle_2core_wall_estimate_s`` (main CPU + workers / 2).

FATE 2.2 figures (1024-bit key, same machine, same split, quiet) are the reference: coordinated LR
250 s wall / 446 CPU-s, AUC 0.706; SecureBoost 29 s wall / 65 CPU-s per tree, AUC 0.762 at 5 trees.
Goals: AUC within 0.005 of the centralised model, wall and CPU each at most half of FATE's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.public_data import FATE_DIR  # noqa: E402
from protocols.vfl import (  # noqa: E402
    LrConfig,
    OptimizerConfig,
    SbConfig,
    run_local_lr,
    run_local_secureboost,
    score_local_lr,
    score_local_secureboost,
    train_plain_secureboost,
)
from protocols.vfl._sb_tree import predict_margin  # noqa: E402

Arr = np.ndarray
DATA = FATE_DIR
TEST_FRACTION = 0.3

FATE = {
    "lr": {"fate_wall_s": 250.0, "fate_cpu_s": 446.0, "fate_auc": 0.706},
    # 5 trees in 187 s / 325 CPU-s: about 29 s and 65 CPU-s per tree once job start-up is set aside
    "secureboost": {"fate_wall_s_per_tree": 29.0, "fate_cpu_s_per_tree": 65.0, "fate_auc": 0.762},
}


# ---------------------------------------------------------------------------------------- data


class Data:
    """Both halves, aligned on ``id`` (row i of ``xa``, ``xp``, ``y``, ``ids`` is one customer)."""

    def __init__(self, name: str, rows: int = 0) -> None:
        self.guest = pd.read_csv(DATA / f"{name}_hetero_guest.csv")
        self.host = pd.read_csv(DATA / f"{name}_hetero_host.csv")
        merged = self.guest.merge(self.host, on="id", suffixes=("_bank", "_telco"))
        if rows:
            from sklearn.model_selection import train_test_split

            keep, _ = train_test_split(np.arange(len(merged)), train_size=rows, stratify=merged["y"], random_state=42)
            merged = merged.iloc[np.sort(keep)].reset_index(drop=True)
        bank = [c + "_bank" if c + "_bank" in merged else c for c in self.guest.columns if c not in ("id", "y")]
        telco = [c + "_telco" if c + "_telco" in merged else c for c in self.host.columns if c != "id"]
        self.ids: Arr = merged["id"].to_numpy()
        self.xa: Arr = merged[bank].to_numpy(float)
        self.xp: Arr = merged[telco].to_numpy(float)
        self.y: Arr = merged["y"].to_numpy(float)

    def split(self) -> tuple[Arr, Arr]:
        """Train and test row positions: 70/30 stratified on y, random_state=42."""
        from sklearn.model_selection import train_test_split

        n_test = int(round(len(self.y) * TEST_FRACTION))  # an integer, as the Flower job holds out
        tr, te = train_test_split(np.arange(len(self.y)), test_size=n_test, stratify=self.y, random_state=42)
        return np.sort(tr), np.sort(te)


def ks(y: Arr, p: Arr) -> float:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(tpr - fpr))


def auc(y: Arr, p: Arr) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


# ----------------------------------------------------------------------------------- baselines


def lr_baselines(args: argparse.Namespace, d: Data, tr: Arr, te: Arr) -> dict[str, Any]:
    """Centralised and bank-only scikit-learn LR on the same split."""
    from sklearn.linear_model import LogisticRegression

    c = 1.0 / (args.alpha * len(tr))
    central = LogisticRegression(C=c, max_iter=2000).fit(np.hstack([d.xa[tr], d.xp[tr]]), d.y[tr])
    bank = LogisticRegression(C=c, max_iter=2000).fit(d.xa[tr], d.y[tr])
    central_p = central.predict_proba(np.hstack([d.xa[te], d.xp[te]]))[:, 1]
    bank_p = bank.predict_proba(d.xa[te])[:, 1]
    return {"central_model": f"scikit-learn LogisticRegression(C={c:.3g})",
            "central_auc": auc(d.y[te], central_p), "central_ks": ks(d.y[te], central_p),
            "bank_only_auc": auc(d.y[te], bank_p), "bank_only_ks": ks(d.y[te], bank_p)}


def sb_baselines(args: argparse.Namespace, d: Data, tr: Arr, te: Arr) -> dict[str, Any]:
    """Centralised and bank-only XGBoost with the SecureBoost settings on the same split."""
    import xgboost as xgb

    cfg = SbConfig(n_trees=args.trees, max_depth=args.depth, n_bins=args.bins, allow_insecure_test_key=True)

    def fit(x_tr: Arr, x_te: Arr) -> Arr:
        model = xgb.XGBClassifier(
            n_estimators=args.trees, max_depth=args.depth, learning_rate=cfg.learning_rate, max_bin=args.bins,
            tree_method="hist", reg_lambda=cfg.reg_lambda, min_child_weight=cfg.min_child_weight,
            base_score=float(d.y[tr].mean()), n_jobs=1,
        ).fit(x_tr, d.y[tr])
        out: Arr = model.predict_proba(x_te)[:, 1]
        return out

    central_p = fit(np.hstack([d.xa[tr], d.xp[tr]]), np.hstack([d.xa[te], d.xp[te]]))
    bank_p = fit(d.xa[tr], d.xa[te])
    return {"central_model": f"XGBoost hist, {args.trees} trees, depth {args.depth}, {args.bins} bins",
            "central_auc": auc(d.y[te], central_p), "central_ks": ks(d.y[te], central_p),
            "bank_only_auc": auc(d.y[te], bank_p), "bank_only_ks": ks(d.y[te], bank_p)}


# ----------------------------------------------------------------------------------- inprocess


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


class Meter:
    """Wall and CPU (self + reaped children) of a block."""

    def __enter__(self) -> Meter:
        self.wall0, (self.own0, self.kids0) = time.perf_counter(), _cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        own, kids = _cpu()
        self.cpu_main, self.cpu_workers = own - self.own0, kids - self.kids0
        self.cpu = self.cpu_main + self.cpu_workers

    def fields(self) -> dict[str, float]:
        """Wall, CPU, and the wall an idle 2-core machine would need (main process + workers / 2)."""
        return {
            "ours_wall_s": self.wall,
            "ours_cpu_s": self.cpu,
            "ours_cpu_s_main_process": self.cpu_main,
            "ours_cpu_s_workers": self.cpu_workers,
            "idle_2core_wall_estimate_s": self.cpu_main + self.cpu_workers / 2,
        }


def traffic_fields(traffic: Any) -> dict[str, Any]:
    return {
        "bytes_sent": traffic.total_binary_bytes,
        "bytes_sent_json": traffic.total_bytes,
        "bytes_by_link": {f"{a}->{b}": n for (a, b), n in traffic.binary_bytes.items()},
        "messages": sum(traffic.messages.values()),
    }


def lr_inprocess(args: argparse.Namespace, d: Data, tr: Arr, te: Arr) -> dict[str, Any]:
    n = len(tr)
    optimizer = (
        OptimizerConfig("newton", args.lr or 1.0, momentum=args.momentum)
        if args.optimizer == "newton"
        else OptimizerConfig(args.optimizer, args.lr or 0.05)
    )
    cfg = LrConfig.recommended(
        n, batch_size=args.batch or n, max_epochs=args.iterations or 6, alpha=args.alpha, optimizer=optimizer,
        gradient=args.gradient, warm_start=not args.cold, allow_insecure_test_key=args.bits < 2048,
    )
    with Meter() as m:
        result = run_local_lr(cfg, d.xa[tr], d.y[tr], d.xp[tr], key_bits=args.bits, workers=args.workers)
    p = score_local_lr(result, d.xa[te], d.xp[te])
    iterations = result.arbiter.iterations
    return {
        **m.fields(),
        "auc": auc(d.y[te], p),
        "ks": ks(d.y[te], p),
        "iterations": iterations,
        "round_trips": iterations + 2,
        "round_trips_note": "as the job: setup, one arbiter instruction per iteration, the final one",
        "batch_size": cfg.batch_size,
        "gradient": cfg.gradient,
        "optimizer": cfg.optimizer.method,
        "stopped_early": result.arbiter.stopped_early,
        **traffic_fields(result.traffic),
    }


def sb_inprocess(args: argparse.Namespace, d: Data, tr: Arr, te: Arr) -> dict[str, Any]:
    cfg = SbConfig(n_trees=args.trees, max_depth=args.depth, n_bins=args.bins, allow_insecure_test_key=args.bits < 2048)
    with Meter() as m:
        result = run_local_secureboost(cfg, d.xa[tr], d.y[tr], d.xp[tr], key_bits=args.bits, workers=args.workers)
    p = score_local_secureboost(result, cfg, d.xa[te], d.xp[te])
    plain_a, plain_p = train_plain_secureboost(cfg, d.xa[tr], d.y[tr], d.xp[tr])
    plain_routes = {k: d.xp[te][:, f] <= thr for k, (f, thr) in plain_p.splits.items()}
    plain_prob = 1 / (1 + np.exp(-predict_margin(plain_a, d.xa[te], plain_routes, cfg)))
    return {
        **m.fields(),
        "auc": auc(d.y[te], p),
        "ks": ks(d.y[te], p),
        "plain_reference_auc": auc(d.y[te], plain_prob),
        "same_trees_as_plain": plain_a.trees == result.active.trees and plain_p.splits == result.passive.splits,
        "passive_splits": len(result.passive.splits),
        "round_trips": -(-args.trees // 5) + 2,
        "round_trips_note": "as the job: setup, one Flower round per 5 trees, finish; "
        f"{args.depth + 1} data-plane exchanges per tree",
        **traffic_fields(result.traffic),
    }


def run_inprocess(args: argparse.Namespace, d: Data, tr: Arr, te: Arr) -> dict[str, Any]:
    out = (lr_inprocess if args.algo == "lr" else sb_inprocess)(args, d, tr, te)
    return {"runtime": "inprocess", "workers": args.workers, **out,
            "peak_rss_mb_by_process": {
                "bench (all parties)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "paillier worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}


# -------------------------------------------------------------------------------------- flower


def run_flower(args: argparse.Namespace, d: Data, tr: Arr, te: Arr) -> dict[str, Any]:
    from _train_flower import FlowerJob, run_flower_job

    if args.algo == "secureboost" and args.bins != 32:
        raise SystemExit("--bins: the train_propensity job always bins into 32 (no job parameter)")
    job = FlowerJob(args.algo, args.bits, args.iterations, args.trees, args.depth, timeout=args.timeout)
    guest = d.guest[d.guest["id"].isin(d.ids)]
    host = d.host[d.host["id"].isin(d.ids)]
    out = run_flower_job(job, guest, host, d.ids[tr], d.ids[te], args.state.resolve())
    return {"runtime": "flower", **out}


# -------------------------------------------------------------------------------------- report


def finish(args: argparse.Namespace, out: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Add the baselines, FATE's figures, per-tree costs and the goals to one runtime's figures."""
    out = {**out, **base}
    fate = dict(FATE[args.algo])
    if args.algo == "secureboost":
        fate |= {"fate_wall_s": fate["fate_wall_s_per_tree"] * args.trees,
                 "fate_cpu_s": fate["fate_cpu_s_per_tree"] * args.trees}
        out |= {"wall_s_per_tree": out["ours_wall_s"] / args.trees, "cpu_s_per_tree": out["ours_cpu_s"] / args.trees}
    out |= {**fate, "reference_wall_s": fate["fate_wall_s"], "reference_cpu_s": fate["fate_cpu_s"],
            "reference_auc": fate["fate_auc"], "reference": "FATE 2.2 (1024-bit Paillier)"}
    out["goal_auc"] = out["auc"] >= out["central_auc"] - 0.005
    out["goal_wall"] = out["ours_wall_s"] <= out["fate_wall_s"] / 2
    out["goal_cpu"] = out["ours_cpu_s"] <= out["fate_cpu_s"] / 2
    return out


def _row(label: str, *cells: object) -> str:
    return f"{label:<30}" + "".join(f"{c:>16}" for c in cells)


def table(out: dict[str, Any]) -> str:
    """The printed report of one runtime."""
    fate_wall, fate_cpu = out["fate_wall_s"], out["fate_cpu_s"]
    lines = [
        f"== {out['algo']} via {out['runtime']}: {out['train_rows']:,} training / {out['test_rows']:,} test rows, "
        f"{out['key_bits']}-bit Paillier",
        _row("", "ours (federated)", "central", "bank only"),
        _row("test AUC", f"{out['auc']:.4f}", f"{out['central_auc']:.4f}", f"{out['bank_only_auc']:.4f}"),
        _row("test KS", f"{out['ks']:.4f}", f"{out['central_ks']:.4f}", f"{out['bank_only_ks']:.4f}"),
        f"   central: {out['central_model']}; FATE 2.2 AUC {out['fate_auc']}",
    ]
    if out.get("job_bank_only_auc") is not None:
        lines.append(_row("bank only (the job's own)", f"{out['job_bank_only_auc']:.4f}"))
    lines += [
        "",
        _row("", "ours", "FATE 2.2", "goal (1/2)"),
        _row("wall s", f"{out['ours_wall_s']:.1f}", f"{fate_wall:.1f}", f"{fate_wall / 2:.1f}"),
        _row("CPU s (all processes)", f"{out['ours_cpu_s']:.1f}", f"{fate_cpu:.1f}", f"{fate_cpu / 2:.1f}"),
    ]
    if "wall_s_per_tree" in out:
        lines += [
            _row("wall s per tree", f"{out['wall_s_per_tree']:.2f}", f"{fate_wall / out['trees']:.1f}",
                 f"{fate_wall / out['trees'] / 2:.1f}"),
            _row("CPU s per tree", f"{out['cpu_s_per_tree']:.2f}", f"{fate_cpu / out['trees']:.1f}",
                 f"{fate_cpu / out['trees'] / 2:.1f}"),
        ]
    if "idle_2core_wall_estimate_s" in out:
        lines.append(_row("wall if idle (estimate)", f"{out['idle_2core_wall_estimate_s']:.1f}"))
    lines += ["", _row("Flower round trips", out["round_trips"])]
    for key, label in (("bytes_relayed", "bytes relayed (ServerApp)"), ("bytes_bank_to_telco", "bytes bank -> telco"),
                       ("bytes_telco_to_bank", "bytes telco -> bank"),
                       ("bytes_nodes_to_coordinator", "bytes nodes -> coordinator"),
                       ("bytes_sent", "bytes (binary codec)"), ("bytes_sent_json", "bytes (JSON/base64)")):
        if out.get(key) is not None:
            lines.append(_row(label, f"{out[key]:,}"))
    if out.get("cpu_s_by_process"):
        lines += ["", _row("process", "CPU s (training)", "peak RSS MB")]
        rss = out["peak_rss_mb_by_process"]
        for role in sorted(set(out["cpu_s_by_process"]) | set(rss)):
            cpu = out["cpu_s_by_process"].get(role)
            mb = rss.get(role)
            lines.append(_row(f"  {role}", "-" if cpu is None else f"{cpu:.1f}", "-" if not mb else f"{mb:.0f}"))
    else:
        lines += [_row(f"peak RSS MB: {role}", f"{mb:.0f}") for role, mb in out["peak_rss_mb_by_process"].items()]
    load = out["load_avg_before"], out["load_avg_after"]
    lines += ["", f"load average (1/5/15 min) before {load[0]}, after {load[1]} on {out['cores']} cores",
              f"goals: AUC {out['goal_auc']}, wall {out['goal_wall']}, CPU {out['goal_cpu']}"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algo", choices=["lr", "secureboost"], required=True)
    ap.add_argument("--runtime", choices=["flower", "inprocess", "both"], default="flower")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--bits", type=int, default=2048, help="Paillier bits; < 2048 only for tests (insecure)")
    ap.add_argument("--rows", type=int, default=0, help="stratified subset of this many rows (0: all)")
    ap.add_argument("--state", type=Path, default=Path(".tandem/train_bench"), help="flower: state, logs, data")
    ap.add_argument("--timeout", type=float, default=3600.0, help="flower: longest wait for the job, seconds")
    ap.add_argument("--workers", type=int, default=2, help="inprocess: Paillier worker processes per party")
    ap.add_argument("--data", default="default_credit")
    ap.add_argument("--trees", type=int, default=30)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--bins", type=int, default=32)
    ap.add_argument("--iterations", type=int, default=None,
                    help="LR iterations (default: the job's default through Flower, 6 in process)")
    ap.add_argument("--batch", type=int, default=0, help="inprocess LR batch size (0: full batch)")
    ap.add_argument("--optimizer", choices=["newton", "adam", "rmsprop", "sgd"], default="newton")
    ap.add_argument("--lr", type=float, default=0.0, help="learning rate (0: 1.0 for newton, 0.05 otherwise)")
    ap.add_argument("--momentum", type=float, default=0.3)
    ap.add_argument("--gradient", choices=["linearized", "taylor"], default="linearized")
    ap.add_argument("--cold", action="store_true", help="no warm start of the active party")
    ap.add_argument("--alpha", type=float, default=1e-4, help="L2 strength (inprocess LR and the sklearn baseline)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    d = Data(args.data, args.rows)
    tr, te = d.split()
    base = (lr_baselines if args.algo == "lr" else sb_baselines)(args, d, tr, te)
    common = {"algo": args.algo, "key_bits": args.bits, "trees": args.trees, "depth": args.depth, "bins": args.bins,
              "train_rows": len(tr), "test_rows": len(te), "cores": os.cpu_count()}
    runs: dict[str, dict[str, Any]] = {}
    for runtime in (["inprocess", "flower"] if args.runtime == "both" else [args.runtime]):
        load_before = os.getloadavg()
        out = (run_inprocess if runtime == "inprocess" else run_flower)(args, d, tr, te)
        out = finish(args, {**common, **out, "load_avg_before": load_before, "load_avg_after": os.getloadavg()}, base)
        runs[runtime] = out
        print("\n" + table(out), flush=True)
    result = runs.get("flower", runs.get("inprocess", {}))
    if len(runs) == 2:
        result = {**runs["flower"], "inprocess": runs["inprocess"]}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
